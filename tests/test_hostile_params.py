"""Every params mistake of issue #11: the stage exits non-zero before any work, naming the key, the rule and the
value, without a traceback, and leaves the previous outputs as they were."""

from __future__ import annotations

import pytest

from faults import run, snapshot
from helpers import write_params

CASES = [  # (stage argv, params overrides, what the message must say)
    (["images"], {"images": {"size": 0}}, "images.size: Input should be greater than or equal to 1 (got 0)"),
    (["images"], {"images": {"size": -64}}, "images.size: Input should be greater than or equal to 1 (got -64)"),
    (["pretrain", "bce"], {"pretrain": {"common": {"steps": -5}}},
     "pretrain.common.steps: Input should be greater than or equal to 0 (got -5)"),
    (["pretrain", "bce"], {"pretrain": {"common": {"batch_size": 0}}},
     "pretrain.common.batch_size: Input should be greater than or equal to 1 (got 0)"),
    (["pretrain", "bce"], {"pretrain": {"common": {"lr_vit": "fast"}}},
     "pretrain.common.lr_vit: Input should be a valid number (got 'fast')"),
    (["evaluate", "bce"], {"evaluate": {"probe": {"max_epochs": -1}}},
     "evaluate.probe.max_epochs: Input should be greater than or equal to 1 (got -1)"),
    (["evaluate", "bce"], {"evaluate": {"probe_seeds": []}}, "evaluate.probe_seeds: List should have at least 1 item"),
    (["teacher", "pretrained"], {"teacher": {"trust_remote_code": "false"}},
     "teacher.trust_remote_code: Input should be a valid boolean (got 'false')"),
    (["teacher", "pretrained"], {"teacher": {"layer": 0}}, "teacher.layer: Input should be greater than or equal to 1 (got 0)"),
    (["teacher_weights"], {"teacher": {"trust_remote_code": "false"}},
     "teacher.trust_remote_code: Input should be a valid boolean"),
    (["records"], {"records": {"sources": {"x": {"kind": "mimic", "root": "r", "labels": "texts"}}}},
     "records.sources.x.labels"),
    (["demo"], {"demo": {"mimic": {"n_patients": 0}}}, "demo.mimic.n_patients: Input should be greater than 0 (got 0)"),
    (["records"], {"fields": ["cardiomegaly", "oedema"]}, "unknown finding(s) ['oedema']"),
]


def _model(stage: str):
    """The typed section a stage validates first (what a subprocess of the stage would run into)."""
    from vivid_med.demo import DemoConfig
    from vivid_med.evaluate import EvaluateParams
    from vivid_med.imaging import ImagesParams
    from vivid_med.pretrain import PretrainParams
    from vivid_med.records import RecordsParams
    from vivid_med.teacher.config import TeacherParams

    return {"demo": ("demo", DemoConfig), "records": ("records", RecordsParams), "images": ("images", ImagesParams),
            "teacher": ("teacher", TeacherParams), "teacher_weights": ("teacher", TeacherParams),
            "pretrain": ("pretrain", PretrainParams), "evaluate": ("evaluate", EvaluateParams)}[stage]


@pytest.mark.parametrize("argv,overrides,message", CASES, ids=[f"{c[0][0]}:{c[2][:40]}" for c in CASES])
def test_every_params_mistake_names_the_key_rule_and_value(tmp_path, argv, overrides, message):
    from vivid_med.params import ParamsError, load_fields, load_section

    path = write_params(tmp_path, **overrides)
    name, model = _model(argv[0])
    with pytest.raises(ParamsError) as err:
        load_fields(path)
        load_section(model, path, name)
    assert message in str(err.value)


#: One real process per stage: exit status 1, the message, no traceback, nothing written.
STAGE_CASES = [next(c for c in CASES if c[0][0] == stage) for stage in dict.fromkeys(c[0][0] for c in CASES)]


@pytest.mark.parametrize("argv,overrides,message", STAGE_CASES, ids=[c[0][0] for c in STAGE_CASES])
def test_a_params_mistake_stops_the_stage_before_any_work(tmp_path, argv, overrides, message):
    outputs = tmp_path / "metrics"
    outputs.mkdir()
    (outputs / "previous.json").write_text('{"kept": true}\n')  # what an earlier run left
    before = snapshot(tmp_path)
    write_params(tmp_path, **overrides)
    proc = run(tmp_path, "-m", f"stages.{argv[0]}", *argv[1:])
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert message in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    after = snapshot(tmp_path)
    assert {k: v for k, v in after.items() if not k.endswith("params.yaml")} == before  # nothing written
