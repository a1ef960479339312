"""Runtime settings: an optional file, defaults in the code, strict values, and never a DVC dependency."""

from __future__ import annotations

import pytest
import yaml

from helpers import REPO, write_runtime
from vivid_med.params import ParamsError
from vivid_med.runtime import EvaluateRuntime, PretrainRuntime, TeacherRuntime, load_runtime


def test_a_missing_file_or_section_gives_the_defaults(tmp_path):
    assert load_runtime(PretrainRuntime, "pretrain", tmp_path / "none.yaml") == PretrainRuntime()
    path = write_runtime(tmp_path / "r.yaml", teacher={"batch_size": 4})
    assert load_runtime(TeacherRuntime, "teacher", path).batch_size == 4
    assert load_runtime(EvaluateRuntime, "evaluate", path) == EvaluateRuntime()


def test_the_environment_names_another_file(tmp_path, monkeypatch):
    monkeypatch.setenv("VIVID_RUNTIME", str(write_runtime(tmp_path / "ci.yaml", pretrain={"num_workers": 3})))
    assert load_runtime(PretrainRuntime, "pretrain").num_workers == 3


@pytest.mark.parametrize("section,value,message", [
    ("teacher", {"batch_size": 0}, "teacher.batch_size: Input should be greater than or equal to 1 (got 0)"),
    ("pretrain", {"processes": "all"}, "pretrain.processes"),
    ("pretrain", {"workers": 2}, "pretrain.workers: Extra inputs are not permitted"),
])
def test_bad_runtime_values_name_the_key(tmp_path, section, value, message):
    model = {"teacher": TeacherRuntime, "pretrain": PretrainRuntime}[section]
    with pytest.raises(ParamsError) as err:
        load_runtime(model, section, write_runtime(tmp_path / "r.yaml", **{section: value}))
    assert message in str(err.value)


def test_no_stage_depends_on_the_runtime_file_and_params_hold_no_runtime_key():
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    text = yaml.safe_dump(dvc)
    assert "runtime.yaml" not in text
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, model in (("teacher", TeacherRuntime), ("evaluate", EvaluateRuntime)):
        assert not set(model.model_fields) & set(params[section]), section
    assert not set(PretrainRuntime.model_fields) & set(params["pretrain"]["common"])
