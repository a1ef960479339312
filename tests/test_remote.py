"""A team shares results through a DVC remote (docs/remotes.md): after a tiny `dvc repro`, `dvc push` to a local
folder remote; a fresh `git clone` + `dvc pull` gets every cached output back, usable as it was."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
import timm
import torch
from dvc.repo import Repo

from pipeline import copy_repo, dvc, metric_files

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]


def _git(repo, *args: str) -> None:
    subprocess.run([*GIT, *args], cwd=repo, check=True, capture_output=True)


def uncached_outs(repo) -> set[str]:
    """Persistent outputs DVC never caches (``cache: false``; git ignores them): no remote holds them, so a clone
    lacks them (``checkpoints/<run>``, ``data/teacher_work/<variant>``)."""
    with Repo(str(repo)) as r:
        return {o.def_path for stage in r.index.stages for o in stage.outs if o.persist and not o.use_cache}


@pytest.mark.slow
def test_push_then_clone_and_pull_gives_back_every_cached_output(tmp_path):
    t0 = time.perf_counter()
    repo = copy_repo(tmp_path / "repo")
    dvc(repo, "repro")
    t_repro = time.perf_counter() - t0
    dvc(repo, "remote", "add", "-d", "shared", str(tmp_path / "remote"))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "results and the remote")
    t1 = time.perf_counter()
    dvc(repo, "push")
    assert "in sync" in dvc(repo, "status", "--cloud").stdout

    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    dvc(clone, "pull")
    t_share = time.perf_counter() - t1
    # every cached output is back; only what no remote holds (cache: false, git-ignored) is missing
    status = json.loads(dvc(clone, "status", "--json").stdout)
    missing = {path for entries in status.values() for entry in entries
               for path, change in entry.get("changed outs", {}).items() if change == "deleted"}
    other = {stage: entries for stage, entries in status.items() if any(
        set(e) - {"changed outs"} or set(e.get("changed outs", {}).values()) - {"deleted"} for e in entries)}
    assert not other, f"a pulled clone differs beyond uncached outputs: {other}"
    assert missing <= uncached_outs(repo), missing - uncached_outs(repo)
    assert metric_files(clone) == metric_files(repo)
    for folder in ("models/product", "models/vivid", "data/records", "data/teacher/pretrained"):
        files = sorted(p.relative_to(repo) for p in (repo / folder).rglob("*") if p.is_file())
        assert files and all((clone / f).read_bytes() == (repo / f).read_bytes() for f in files), folder

    # the pulled outputs are usable: summarize + export rerun from them give the same bytes
    dvc(clone, "repro", "--force", "--single-item", "summarize", "export")
    assert metric_files(clone) == metric_files(repo)
    assert (clone / "models/product/README.md").read_bytes() == (repo / "models/product/README.md").read_bytes()
    model = timm.create_model(f"local-dir:{clone / 'models/product'}", pretrained=True).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, *model.pretrained_cfg["input_size"])).shape[0] == 1
    print(f"\nremote round trip: repro {t_repro:.0f} s, push + clone + pull {t_share:.0f} s, "
          f"total {time.perf_counter() - t0:.0f} s")
