"""Fault injection for the hostile-input suites: run a stage (or the CLI) as a real process, optionally killed
with SIGKILL at a named failpoint (``vivid_med.io.failpoint``), and compare what it left on disk."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(cwd: Path, *args: str, failpoint: str | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python ARGS`` in ``cwd`` with this repository importable; SIGKILLed at ``failpoint`` when given."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("VIVID_FAILPOINT", None)
    if failpoint:
        env["VIVID_FAILPOINT"] = failpoint
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def killed(proc: subprocess.CompletedProcess) -> bool:
    """True when the process died of SIGKILL (the failpoint fired)."""
    return proc.returncode == -signal.SIGKILL


def snapshot(*roots: Path) -> dict[str, str]:
    """sha256 of every file under ``roots`` (relative path -> digest); temporary files included, so a leftover
    partial file shows up as a difference."""
    out = {}
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for p in files:
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out
