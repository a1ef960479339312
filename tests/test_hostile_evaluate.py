"""The evaluate and summarize stages killed with SIGKILL (``tests/faults.py``) at their commits and mid-way, on the
scratch project of ``test_evaluate_stage``: each output is whole and exactly the version (old or new) its place
in the write order implies (plot data, then the detail, the headline metric last; metrics/plots/ swapped in whole,
then summary.md, summary.json last), a hidden ``*.tmp`` the kill left aside; a rerun gives exactly the outputs of
an uninterrupted run."""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import pytest

from faults import killed, run, snapshot
from test_evaluate_stage import PARAMS, make_project, write_project_params

EVALUATE, SUMMARIZE = ("-m", "stages.evaluate", "tiny"), ("-m", "stages.summarize")
#: The new params: another probe learning rate and one seed more, so every metric, detail and ROC changes.
NEW_PARAMS = {**PARAMS, "probe_seeds": [0, 1, 2], "probe": {**PARAMS["probe"], "lr": 2.0e-2}}
PLOT_DATA, DETAIL, METRIC = "data/features/tiny/plots/", "metrics/eval/detail/", "metrics/eval/tiny.json"
PRED = "data/features/tiny/predictions/"
SLOW = pytest.mark.slow  # each case runs a stage twice; one mid-run kill per stage stays in the default suite


def state(root: Path) -> dict[str, str]:
    """sha256 of every output file (metrics/, data/features/), relative to ``root``; hidden temporary files and
    folders a kill left behind are asserted to be such and left out."""
    out = {}
    for path, digest in snapshot(root / "metrics", root / "data" / "features").items():
        rel = Path(path).relative_to(root)
        hidden = [p for p in rel.parts if p.startswith(".")]
        if hidden:
            assert hidden[0].endswith(".tmp"), f"unexpected hidden file {rel}"
            continue
        out[str(rel)] = digest
    return out


def in_process(project: Path, stage: str, *args: str) -> None:
    """``python -m stages.<stage> ARGS`` in this process (the references; the kills run as processes)."""
    module = importlib.import_module(f"stages.{stage}")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(project)
        module.main(list(args))


@pytest.fixture(scope="module")
def versions(tmp_path_factory) -> dict[str, Path]:
    """Three copies of the project: ``old`` (evaluated and summarized with ``PARAMS``), ``mid`` (then evaluated
    with ``NEW_PARAMS``) and ``new`` (then summarized)."""
    old = make_project(tmp_path_factory.mktemp("old"))
    in_process(old, "evaluate", "tiny")
    in_process(old, "summarize")
    mid = Path(shutil.copytree(old, tmp_path_factory.mktemp("mid") / "p"))
    write_project_params(mid, NEW_PARAMS)
    in_process(mid, "evaluate", "tiny")
    new = Path(shutil.copytree(mid, tmp_path_factory.mktemp("new") / "p"))
    in_process(new, "summarize")
    return {"old": old, "mid": mid, "new": new}


def assert_written(project: Path, before: dict[str, str], after: dict[str, str], written: tuple[str, ...]) -> None:
    """Outputs under the ``written`` prefixes are their new version, the others their old one."""
    now = state(project)
    for path in sorted(set(before) | set(after) | set(now)):
        expected = after if path.startswith(written) else before
        assert now.get(path) == expected.get(path), f"{path}: not its {'new' if expected is after else 'old'} version"


@pytest.mark.parametrize("point, written", [
    ("evaluate:probes", (f"{PLOT_DATA}roc_chexpert_paper.csv", f"{PRED}chexpert_paper")),  # paper probes done
    pytest.param("commit:roc_nih8.csv", (f"{PLOT_DATA}roc_chexpert_paper.csv", f"{PRED}chexpert", f"{PRED}nih8"),
                 marks=SLOW),
    pytest.param("commit:tiny.json", (PLOT_DATA, PRED), marks=SLOW),           # the detail's commit (written first)
    pytest.param("evaluate:metrics", (PLOT_DATA, PRED, DETAIL), marks=SLOW),   # the detail in place, the metric next
])
def test_killed_evaluate_keeps_old_or_new_outputs_and_reruns(versions, tmp_path, point, written):
    project = Path(shutil.copytree(versions["old"], tmp_path / "p"))
    write_project_params(project, NEW_PARAMS)
    before, after = state(versions["old"]), state(versions["mid"])
    changed = [f"{PLOT_DATA}roc_chexpert_paper.csv", f"{PLOT_DATA}roc_nih8.csv", f"{DETAIL}tiny.json", METRIC]
    assert all(before[p] != after[p] for p in changed)

    assert killed(run(project, *EVALUATE, failpoint=point)), point
    assert_written(project, before, after, written)
    assert run(project, *EVALUATE).returncode == 0
    assert state(project) == after


@pytest.mark.parametrize("point, written", [
    ("summarize:plots", ()),                       # half of metrics/plots/ written in its temporary folder
    pytest.param("commit:plots", (), marks=SLOW),  # metrics/plots/ complete aside, about to be swapped in
    pytest.param("commit:summary.md", ("metrics/plots/",), marks=SLOW),
    pytest.param("commit:summary.json", ("metrics/plots/", "metrics/summary.md"), marks=SLOW),
])
def test_killed_summarize_keeps_old_or_new_outputs_and_reruns(versions, tmp_path, point, written):
    project = Path(shutil.copytree(versions["mid"], tmp_path / "p"))
    before, after = state(versions["mid"]), state(versions["new"])
    assert all(before[p] != after[p] for p in ("metrics/plots/roc_nih8.csv", "metrics/summary.md",
                                               "metrics/summary.json"))

    assert killed(run(project, *SUMMARIZE, failpoint=point)), point
    assert_written(project, before, after, written)
    assert run(project, *SUMMARIZE).returncode == 0
    assert state(project) == after
