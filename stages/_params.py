"""Read this repository's params.yaml: one typed section per stage (the only place stages read configuration)."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from vivid_med.params import load_fields, load_section, load_train_runs
from vivid_med.runtime import load_runtime

PARAMS_FILE = Path("params.yaml")
M = TypeVar("M", bound=BaseModel)


def section(model: type[M], name: str) -> M:
    """``params.yaml[name]`` validated by ``model`` (ParamsError naming the key before any work)."""
    return load_section(model, PARAMS_FILE, name)


def fields() -> tuple[str, ...]:
    """The top-level ``fields`` list: the pretraining fields every stage shares."""
    return load_fields(PARAMS_FILE)


def train_runs() -> list[str]:
    """``pretrain.train_runs``: the backbones ``dvc repro`` trains and evaluates."""
    return load_train_runs(PARAMS_FILE)


def runtime(model: type[M], name: str) -> M:
    """Section ``name`` of runtime.yaml (or $VIVID_RUNTIME): settings that change speed, never results."""
    return load_runtime(model, name)
