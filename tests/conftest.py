"""Shared fixtures: the real-data folder (or a skip) and per-session expensive objects."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("VIVID_SHARED_DATA", REPO.parent / "shared" / "data"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real public data), or skip with a reason where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (docs/real-data.md, docs/evaluation.md)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A copy of the repo with params.tiny.yaml applied, after one `dvc repro` (shared by the DAG tests)."""
    from pipeline import copy_repo, dvc

    repo = copy_repo(tmp_path_factory.mktemp("tiny") / "repo")
    dvc(repo, "repro")
    return repo
