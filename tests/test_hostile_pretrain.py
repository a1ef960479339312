"""The pretrain stage killed with SIGKILL (``tests/faults.py``) mid-training and at each commit, on a scratch
project whose params change from ``OLD`` to ``NEW``: models/<run>/, metrics/pretrain/<run>.json and
metrics/timing/pretrain_<run>.json are each whole, their old or their new version (a hidden ``*.tmp`` the kill left
beside them aside), written in that order (the metrics last); dvclive/<run>/ is a live log, at every moment whole
files holding a prefix of the new run's curve. A rerun resumes from the last checkpoint and ends with exactly the
outputs of an uninterrupted run (wall-clock values aside)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from faults import killed, run, snapshot
from helpers import write_params, write_runtime
from test_pretrain import pretrain_section, write_inputs

STAGE = ("-m", "stages.pretrain", "bce")
RUNS = {"bce": {"objective": "bce"}}
OLD = pretrain_section(RUNS, ["bce"], steps=10)
NEW = pretrain_section(RUNS, ["bce"], steps=12)
MODEL, WEIGHTS, LIVE = "models/bce", "models/bce/model.safetensors", "dvclive/bce"
METRIC, TIMING = "metrics/pretrain/bce.json", "metrics/timing/pretrain_bce.json"
OUTPUTS = ("models", "metrics", "dvclive")


@pytest.fixture(scope="module", autouse=True)
def one_process(tmp_path_factory):
    """One process, a checkpoint every 5 steps (runtime settings)."""
    path = write_runtime(tmp_path_factory.mktemp("runtime") / "runtime.yaml",
                         pretrain={"processes": 1, "checkpoint_every": 5})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VIVID_RUNTIME", str(path))
        yield


def state(root: Path) -> dict[str, str]:
    """Every output file by relative path: sha256, wall-clock values left out (the timing file by its keys, the
    curve's ``timing`` by its steps); hidden temporary files a kill left beside an output are asserted to be such
    and left out."""
    out = {}
    for path, digest in snapshot(*(root / o for o in OUTPUTS if (root / o).exists())).items():
        rel = Path(path).relative_to(root)
        hidden = [p for p in rel.parts if p.startswith(".")]
        if hidden:
            assert hidden[0].endswith(".tmp"), f"unexpected hidden file {rel}"
            continue
        text = (root / rel).read_text() if rel.suffix in (".json", ".tsv") else None
        if str(rel) == TIMING:
            digest = ",".join(sorted(json.loads(text)))
        elif rel.parts[0] == "dvclive" and rel.name == "metrics.json":
            digest = json.dumps({k: v for k, v in json.loads(text).items() if k != "timing"})
        elif rel.parts[0] == "dvclive" and "timing" in rel.parts:
            digest = " ".join(line.split("\t")[0] for line in text.splitlines())
        out[str(rel)] = digest
    return out


def ok(project: Path) -> dict:
    proc = run(project, *STAGE)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((project / TIMING).read_text())


@pytest.fixture(scope="module")
def versions(tmp_path_factory) -> dict[str, Path]:
    """``old``: the stage run with ``OLD``; ``new``: a copy of it, then run with ``NEW`` (a full run: new
    fingerprint, step 0)."""
    old = tmp_path_factory.mktemp("old")
    write_inputs(old, n=40)
    write_params(old, pretrain=OLD)
    ok(old)
    new = Path(shutil.copytree(old, tmp_path_factory.mktemp("new") / "p"))
    write_params(new, pretrain=NEW)
    assert ok(new)["resumed_from"] == 0
    return {"old": old, "new": new}


def curve_rows(path: Path) -> list[str]:
    """A DVCLive TSV's lines; wall-clock ones (under ``timing/``) reduced to their steps."""
    lines = path.read_text().splitlines()
    return [line.split("\t")[0] for line in lines] if "timing" in path.parts else lines


def assert_live_prefix(project: Path, final: Path) -> None:
    """dvclive/bce/: whole files; each curve a prefix of ``final``'s and ``metrics.json`` at its last step."""
    lengths = set()
    for path in (project / LIVE).rglob("*.tsv"):
        if not path.name.startswith("."):
            got, want = curve_rows(path), curve_rows(final / path.relative_to(project))
            assert len(got) > 1 and got == want[:len(got)], f"{path}: not a prefix of the final curve"
            lengths.add(len(got) - 1)
    assert len(lengths) <= 1, f"curves of different lengths {lengths}"
    summary = project / LIVE / "metrics.json"
    if summary.exists():
        assert json.loads(summary.read_text())["step"] == max(lengths, default=0)


SLOW = pytest.mark.slow  # each case runs the stage twice; the mid-training kill stays in the default suite


@pytest.mark.parametrize("point, written", [
    ("pretrain:step:7", ()),                  # step 7 done (checkpoint at 5): nothing but the live curve written
    pytest.param("commit:metrics.json", (), marks=SLOW),  # the curve's first summary, about to be swapped in
    pytest.param("commit:bce", (), marks=SLOW),           # the export complete in its temporary folder
    pytest.param("commit:pretrain_bce.json", (MODEL,), marks=SLOW),  # the export swapped in, the timing about to be
    pytest.param("commit:bce.json", (MODEL, TIMING), marks=SLOW),    # export and timing in place, the metrics next
])
def test_killed_stage_leaves_old_or_new_outputs_and_resumes(versions, tmp_path, point, written):
    project = Path(shutil.copytree(versions["old"], tmp_path / "p"))
    write_params(project, pretrain=NEW)
    before, after = state(versions["old"]), state(versions["new"])
    old_timing = (versions["old"] / TIMING).read_bytes()
    assert before[METRIC] != after[METRIC] and before[WEIGHTS] != after[WEIGHTS]

    assert killed(run(project, *STAGE, failpoint=point)), point
    now = state(project)
    for path in sorted(p for p in set(before) | set(after) | set(now) if not p.startswith(LIVE)):
        new = any(path.startswith(w) for w in written)
        assert now.get(path) == (after if new else before).get(path), f"{path}: not its {('old', 'new')[new]} version"
    assert ((project / TIMING).read_bytes() == old_timing) == (TIMING not in written)
    assert_live_prefix(project, versions["new"])

    resumed_from = ok(project)["resumed_from"]
    checkpoint = torch.load(project / "checkpoints/bce/last.pt", weights_only=True)["step"]
    assert checkpoint == 12 and resumed_from == {"pretrain:step:7": 5, "commit:metrics.json": 0}.get(point, 12)
    assert state(project) == after
    assert not [p for p in (project / LIVE).rglob(".*")], "a temporary file left in the DVCLive folder"

