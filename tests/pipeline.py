"""Helpers to run the real DVC pipeline in a throw-away copy of the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from helpers import deep_merge

REPO = Path(__file__).resolve().parents[1]
#: What a copy leaves behind: the venv, outputs and caches (a copy starts like a fresh clone).
_SKIP = {".git", "data", "models", "metrics", "dvclive", "checkpoints", "dvc.lock", ".lock-venv"}
#: Skipped at any depth (virtual environments, e.g. the medspaCy benchmark's, and caches).
_SKIP_ANYWHERE = {".venv", "__pycache__", ".pytest_cache"}


def copy_repo(dest: Path, profile: str | None = "tiny") -> Path:
    """Copy the repository's sources to ``dest``, apply ``params.<profile>.yaml``, and make it a git repo."""
    def ignore(folder: str, names: list[str]) -> set[str]:
        top = Path(folder).resolve() == REPO
        return {n for n in names if n in _SKIP_ANYWHERE or (top and n in _SKIP)
                or n.endswith(".egg-info") or (Path(folder).name == ".dvc" and n in {"cache", "tmp"})}

    shutil.copytree(REPO, dest, ignore=ignore)
    if profile:
        params = yaml.safe_load((dest / "params.yaml").read_text())
        override = yaml.safe_load((dest / f"params.{profile}.yaml").read_text())
        (dest / "params.yaml").write_text(yaml.safe_dump(deep_merge(params, override), sort_keys=False))
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "copy"]):
        subprocess.run(["git", *args], cwd=dest, check=True)
    return dest


def dvc(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``dvc ARGS`` in ``repo`` with this interpreter's environment first on PATH."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, env=env, text=True,
                          capture_output=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"dvc {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def metric_files(repo: Path) -> dict[str, bytes]:
    """Every metrics JSON of a run, by relative path (not metrics/timing/: wall-clock varies by machine)."""
    return {str(p.relative_to(repo)): p.read_bytes() for p in sorted((repo / "metrics").rglob("*.json"))
            if "timing" not in p.relative_to(repo).parts}


def numbers(obj, prefix: str = "") -> dict[str, float]:
    """Every numeric leaf of a JSON document by its dotted path."""
    if isinstance(obj, dict):
        return {k: v for key, val in obj.items() for k, v in numbers(val, f"{prefix}{key}.").items()}
    if isinstance(obj, list):
        return {k: v for i, val in enumerate(obj) for k, v in numbers(val, f"{prefix}{i}.").items()}
    return {prefix.rstrip("."): float(obj)} if isinstance(obj, (int, float)) and not isinstance(obj, bool) else {}


def value_kind(key: str) -> str:
    """``auc``, ``f1`` (F1 and accuracy) or ``other``: the kinds the cross-machine tolerance is set for."""
    parts = key.replace(":", ".").split(".")
    if any("auc" in p.lower() for p in parts):
        return "auc"
    return "f1" if any(p.lower() in ("f1", "accuracy") or p.lower().startswith("f1") for p in parts) else "other"
