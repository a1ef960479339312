"""The pretraining library and stage: typed run params, export, resume, a new objective with no other edit, the
stage under torchrun, and its DVCLive curve in `dvc exp show` while `dvc exp run` trains."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

import faults
from helpers import section, tiny_common, write_params, write_runtime
from vivid_med.objectives import OBJECTIVES, Objective, ObjectiveConfig, Resources
from vivid_med.params import ParamsError, validate_section
from vivid_med.pretrain import PretrainParams

VIVID = {"objective": "vivid", "teacher": "pretrained", "spd": {"groups": 2, "queries": 2, "heads": 2},
         "orth_weight": 0.02, "align_weight": 1.0, "temperature": 0.1, "answerability_mask": True}


def write_inputs(root, n: int = 24, size: int = 32) -> None:
    """A tiny records table (train split) and its image store, built by the real images code."""
    import pandas as pd
    from PIL import Image

    from vivid_med.fields import FIELDS, PRETRAIN_FIELDS
    from vivid_med.imaging import build_store
    from vivid_med.tables import write_records
    from vivid_med.ums import cxr_record, provenance, target_hash, target_text

    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        (root / "src").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8)).save(root / "src" / f"{i}.png")
        states = {f: [None, "present", "absent", "uncertain"][rng.integers(4)] for f in PRETRAIN_FIELDS}
        rec = cxr_record(states, "PA", provenance())
        rows.append({"dataset": "demo_mimic", "study_id": f"s{i}", "patient_id": f"p{i}", "image_id": f"i{i}",
                     "image_path": f"{i}.png", "view": "PA", "split": "train" if i < n - 4 else "val",
                     "report": None, "ums_json": rec.model_dump_json(),
                     "target_hash": target_hash(target_text(rec, PRETRAIN_FIELDS)),
                     **{f: states.get(f) for f in FIELDS}})
    records = pd.DataFrame(rows)
    write_records(records, root / "data/records/demo_mimic.parquet", PRETRAIN_FIELDS)
    build_store(records, root / "src", root / "data/images/demo_mimic", size)


def write_cache(root) -> None:
    """The real teacher cache (tiny random Llama) for the records' targets: data/teacher/pretrained/."""
    from tiny_teacher import write_tiny
    from vivid_med.fields import PRETRAIN_FIELDS
    from vivid_med.teacher.cache import build_cache, distinct_targets
    from vivid_med.teacher.embed import Embedder
    from vivid_med.teacher.load import load_teacher

    folder = write_tiny(root / "tiny", layers=2)
    embedder = Embedder(load_teacher(folder, layer=2), "name_state", "chat", PRETRAIN_FIELDS)
    targets = distinct_targets([root / "data/records/demo_mimic.parquet"], PRETRAIN_FIELDS)
    build_cache(embedder, targets, root / "data/teacher/pretrained", root / "work", progress=False)


def use_runtime(monkeypatch, path: Path, **pretrain: Any) -> None:
    """Point the stages at a runtime file with these ``pretrain`` settings (one process unless given)."""
    monkeypatch.setenv("VIVID_RUNTIME", str(write_runtime(path, pretrain={"processes": 1, **pretrain})))


@pytest.fixture(autouse=True)
def one_process(monkeypatch, tmp_path):
    """The stage in one process (``auto`` would relaunch it under torchrun on a multi-GPU machine), a checkpoint
    every 2 steps."""
    use_runtime(monkeypatch, tmp_path / "runtime" / "runtime.yaml", checkpoint_every=2)


def pretrain_section(runs: dict, train_runs: list[str], **common: Any) -> dict:
    return {"train_runs": train_runs, "export": train_runs[0], "common": tiny_common(**common), "runs": runs}


@pytest.mark.parametrize("key,value,message", [
    ("steps", -5, "common.steps: Input should be greater than or equal to 0"),
    ("batch_size", 0, "common.batch_size: Input should be greater than or equal to 1"),
    ("lr_vit", "fast", "common.lr_vit: Input should be a valid number"),
    ("pretrained", "false", "common.pretrained: Input should be a valid boolean"),
    ("amp", "fp8", "common.amp: Input should be 'auto', 'bf16' or 'off'"),
    ("datasets", [], "common.datasets: List should have at least 1 item"),
])
def test_bad_common_params_name_the_key(key, value, message):
    raw = section("pretrain", common={key: value})
    with pytest.raises(ParamsError, match=message):
        validate_section(PretrainParams, raw, "pretrain")


@pytest.mark.parametrize("run,message", [
    ({"objective": "mae"}, "runs.r.objective: 'mae' is not an objective; known: .*'bce'"),
    ({"objective": "vivid"}, "runs.r.teacher: Field required"),
    ({**VIVID, "orth_weight": -1.0}, "runs.r.orth_weight: Input should be greater than or equal to 0"),
    ({**VIVID, "spd": "on"}, "runs.r.spd"),
    ({"objective": "bce", "temperature": 0.1}, "runs.r.temperature: Extra inputs are not permitted"),
    ({"objective": "none", "orth_weight": 0.1}, "runs.r.objective: .none. is not an objective.*takes no other key"),
    ({"objective": "bce", "steps": -1}, "runs.r.steps: Input should be greater than or equal to 0"),
])
def test_bad_runs_name_the_key(run, message):
    with pytest.raises(ParamsError, match=message):
        validate_section(PretrainParams, pretrain_section({"r": run}, ["r"]), "pretrain")


def test_a_run_overrides_common_and_export_must_be_trained():
    p = validate_section(PretrainParams, pretrain_section({"r": {"objective": "bce", "lr_head": 5e-4},
                                                           "r_seed2": {"objective": "bce", "seed": 2}}, ["r"]),
                         "pretrain")
    assert p.resolve("r").common.lr_head == 5e-4 and p.common.lr_head == 1e-3
    assert p.resolve("r_seed2").common.seed == 2 and p.common.seed == 0  # another pretraining seed: a common key
    raw = {**pretrain_section({"r": {"objective": "bce"}, "s": {"objective": "bce"}}, ["r"]), "export": "s"}
    with pytest.raises(ParamsError, match="export: 's' is not trained"):
        validate_section(PretrainParams, raw, "pretrain")


def test_stage_trains_exports_and_reruns_from_checkpoint(tmp_path, monkeypatch):
    from stages import pretrain as stage
    from vivid_med.student import load_backbone, load_student
    from vivid_med.student.export import WEIGHTS_FILE

    write_inputs(tmp_path)
    runs = {"bce": {"objective": "bce"}, "random_init": {"objective": "none"}, "vivid": VIVID}
    write_params(tmp_path, pretrain=pretrain_section(runs, ["bce", "random_init", "vivid"]))
    monkeypatch.chdir(tmp_path)
    stage.main(["bce"])
    stage.main(["random_init"])
    write_cache(tmp_path)
    stage.main(["vivid"])
    assert load_student(tmp_path / "models/vivid").spd is not None
    assert "orth" in json.loads((tmp_path / "metrics/pretrain/vivid.json").read_text())["final"]
    with pytest.raises(ParamsError, match="no run 'nope'"):
        stage.main(["nope"])
    m = json.loads((tmp_path / "metrics/pretrain/bce.json").read_text())
    assert m["steps"] == 3 and m["n_train"] == 20 and m["n_params"] > 0
    assert json.loads((tmp_path / "metrics/pretrain/random_init.json").read_text())["steps"] == 0
    trained, untrained = load_backbone(tmp_path / "models/bce"), load_backbone(tmp_path / "models/random_init")
    x = torch.zeros(1, 1, 32, 32)
    assert not torch.equal(trained.forward_features(x), untrained.forward_features(x))
    live = json.loads((tmp_path / "dvclive/bce/metrics.json").read_text())
    assert live["step"] == 3 and live["loss"] == m["final"]["loss"] and live["timing"]["images_per_s"] > 0
    assert (tmp_path / "dvclive/vivid/plots/metrics/orth.tsv").read_text().splitlines()[0] == "step\torth"
    assert json.loads((tmp_path / "dvclive/random_init/metrics.json").read_text()) == {"step": 0}
    # a rerun with the same params finds the finished checkpoint: no step is trained again, same export and curve
    before = (tmp_path / f"models/bce/{WEIGHTS_FILE}").read_bytes()
    loss = (tmp_path / "dvclive/bce/plots/metrics/loss.tsv").read_bytes()
    stage.main(["bce"])
    again = json.loads((tmp_path / "metrics/pretrain/bce.json").read_text())
    assert json.loads((tmp_path / "metrics/timing/pretrain_bce.json").read_text())["resumed_from"] == 3
    assert again == m, "a resumed run must give the same metrics"
    assert (tmp_path / f"models/bce/{WEIGHTS_FILE}").read_bytes() == before
    assert (tmp_path / "dvclive/bce/plots/metrics/loss.tsv").read_bytes() == loss


def test_teacher_variant_without_a_cache_is_refused_before_any_data(tmp_path, monkeypatch):
    from stages import pretrain as stage

    write_params(tmp_path, pretrain=pretrain_section({"v": {**VIVID, "teacher": "random"}}, ["v"]),
                 teacher={"variants": ["pretrained"]})
    monkeypatch.chdir(tmp_path)  # no data at all: the error must come first
    with pytest.raises(ParamsError, match=r"runs.v.teacher: 'random' is not in teacher.variants \['pretrained'\]"):
        stage.main(["v"])


class ToyConfig(ObjectiveConfig):
    weight: float


class ToyObjective(Objective):
    """A new objective written in a test module: regress the mean of the pooled feature to ``weight``."""

    Config = ToyConfig

    def __init__(self, dim: int, weight: float) -> None:
        super().__init__()
        self.head, self.weight = nn.Linear(dim, 1), weight

    @classmethod
    def build(cls, config: ToyConfig, dim: int, resources: Resources) -> "ToyObjective":
        return cls(dim, config.weight)

    def forward(self, tokens, pooled, batch) -> dict[str, torch.Tensor]:
        loss = F.mse_loss(self.head(pooled).squeeze(-1), torch.full((len(pooled),), self.weight))
        return {"loss": loss, "toy": loss.detach()}


def test_a_new_objective_is_one_class_and_a_params_entry(tmp_path, monkeypatch):
    """Registering a class and naming it in params.yaml trains and exports it: no other file is edited."""
    from stages import pretrain as stage
    from vivid_med.student import load_backbone

    OBJECTIVES.register("toy")(ToyObjective)
    try:
        write_inputs(tmp_path)
        write_params(tmp_path, pretrain=pretrain_section({"mine": {"objective": "toy", "weight": 2.0}}, ["mine"]))
        monkeypatch.chdir(tmp_path)
        stage.main(["mine"])
    finally:
        OBJECTIVES.unregister("toy")
    metrics = json.loads((tmp_path / "metrics/pretrain/mine.json").read_text())
    assert metrics["objective"] == "toy" and metrics["steps"] == 3 and "toy" in metrics["final"]
    assert load_backbone(tmp_path / "models/mine") is not None


def tsv(path) -> list[tuple[int, float]]:
    """(step, value) rows of a DVCLive metric file."""
    return [(int(a), float(b)) for a, b in (line.split("\t") for line in path.read_text().splitlines()[1:])]


@pytest.mark.slow
def test_stage_launches_torchrun_and_two_processes_match_one(tmp_path, monkeypatch):
    """runtime pretrain.processes 2: the stage relaunches itself under torchrun (gloo on the CPU); the export equals the
    1-process run's up to float reduction order, and rank 0 alone writes (one summary line, one row per step).

    state_classifier: its loss is a plain mean over the batch, so the mean over processes is the whole batch's
    (bce and vivid normalise by per-process label counts, and vivid's InfoNCE sees per-process targets)."""
    from vivid_med.student import load_backbone

    runs = {"state_classifier": {"objective": "state_classifier"}}
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        write_inputs(tmp_path / name, n=40)
        write_params(tmp_path / name, pretrain=pretrain_section(runs, list(runs), steps=6))
    procs = {}
    for name, n in (("one", "1"), ("two", "2")):
        use_runtime(monkeypatch, tmp_path / f"runtime{n}.yaml", processes=int(n))
        procs[name] = faults.run(tmp_path / name, "-m", "stages.pretrain", "state_classifier")
        assert procs[name].returncode == 0, procs[name].stderr[-3000:]
    assert procs["two"].stdout.count("pretrain state_classifier: ") == 1
    metrics = {n: json.loads((tmp_path / n / "metrics/pretrain/state_classifier.json").read_text()) for n in procs}
    assert metrics["one"]["world_size"] == 1 and metrics["two"]["world_size"] == 2
    one, two = (load_backbone(tmp_path / n / "models/state_classifier").state_dict() for n in procs)
    for k in one:
        assert torch.allclose(one[k], two[k], atol=1e-4), k
    curves = {n: tsv(tmp_path / n / "dvclive/state_classifier/plots/metrics/loss.tsv") for n in procs}
    assert [s for s, _ in curves["two"]] == [1, 2, 3, 4, 5, 6]
    assert np.allclose([v for _, v in curves["two"]], [v for _, v in curves["one"]], atol=1e-5)


@pytest.mark.slow
def test_dvc_exp_show_follows_a_running_pretrain(tmp_path):
    """`dvc exp show` reads the running experiment's workspace: DVCLive's summary (a top-level metric, its folder a
    stage output, as in the pretrain stage of dvc.yaml) shows the step climbing while `dvc exp run` trains."""
    steps = 300
    write_inputs(tmp_path, n=40)
    write_params(tmp_path, pretrain=pretrain_section({"bce": {"objective": "bce"}}, ["bce"], steps=steps))
    runtime = write_runtime(tmp_path / "runtime.yaml", pretrain={"processes": 1, "checkpoint_every": 100})
    outs = ["models/${item}", {"checkpoints/${item}": {"persist": True, "cache": False}},
            {"dvclive/${item}": {"cache": False}}, {"metrics/timing/pretrain_${item}.json": {"cache": False}}]
    stage = {"cmd": "python -m stages.pretrain ${item}", "params": ["pretrain.common", "pretrain.runs.${item}"],
             "outs": outs, "metrics": [{"metrics/pretrain/${item}.json": {"cache": False}}]}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"pretrain": {"foreach": ["bce"], "do": stage}},
                                                       "metrics": ["dvclive/bce/metrics.json"]}))
    env = {**os.environ, "PYTHONPATH": str(faults.REPO), "VIVID_RUNTIME": str(runtime), "OMP_NUM_THREADS": "1",
           "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ['PATH']}"}
    dvc = [sys.executable, "-m", "dvc"]
    for cmd in (["git", "init", "-q"], [*dvc, "init", "-q"], ["git", "add", "-A"],
                ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "scratch"]):
        subprocess.run(cmd, cwd=tmp_path, env=env, check=True, capture_output=True)
    proc = subprocess.Popen([*dvc, "exp", "run"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    seen = []
    while proc.poll() is None:
        show = subprocess.run([*dvc, "exp", "show", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True)
        for baseline in json.loads(show.stdout or "[]"):
            for exp in baseline.get("experiments") or []:
                if (exp.get("executor") or {}).get("state") == "running":
                    metrics = exp["revs"][0]["data"]["metrics"]
                    seen.append(metrics.get("dvclive/bce/metrics.json", {}).get("data", {}).get("step"))
    assert proc.returncode == 0
    assert any(s is not None and 0 < s < steps for s in seen), f"no live step seen: {seen}"
    assert json.loads((tmp_path / "dvclive/bce/metrics.json").read_text())["step"] == steps
