"""The user's workflow across git branches: commit, branch, change a param, `dvc exp run`, diff."""

from __future__ import annotations

import subprocess

import pytest

from pipeline import copy_repo, dvc

pytestmark = pytest.mark.slow


def git(repo, *args):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                          capture_output=True, text=True)


def test_branch_param_change_shows_in_metrics_and_params_diff(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    dvc(repo, "repro")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "baseline run")
    git(repo, "branch", "-M", "main")
    git(repo, "checkout", "-qb", "fewer-steps")

    out = dvc(repo, "exp", "run", "-S", "+pretrain.runs.bce.lr_head=5e-4").stdout
    assert "Running stage 'pretrain@bce'" in out
    assert "Running stage 'pretrain@vivid'" not in out, "a bce-only change must not retrain vivid"

    params = dvc(repo, "params", "diff", "main").stdout
    assert "pretrain.runs.bce.lr_head" in params
    metrics = dvc(repo, "metrics", "diff", "main").stdout
    assert "metrics/eval/bce.json" in metrics
