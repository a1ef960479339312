"""Typed params: every section of ``params.yaml`` is validated by one strict Pydantic model before any work.

The models have no defaults: ``params.yaml`` is the one place a value is written (the tiny profile and
``dvc exp run -S`` override it there). Validation is strict: a quoted ``"false"`` is not a boolean and ``fast``
is not a learning rate; unknown keys are refused. An error names the key, the rule and the value given::

    params.yaml: pretrain.common.steps: Input should be greater than or equal to 0 (got -5)
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from vivid_med.fields import check_fields

M = TypeVar("M", bound=BaseModel)


class StrictParams(BaseModel):
    """Base of every params model: strict types, no unknown keys, immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class ParamsError(ValueError):
    """A params mistake; the message names the file, the key, the rule and the value."""


#: Finding keys of ``vivid_med.fields.FIELDS`` (unknown or repeated keys are refused).
Fields = Annotated[list[str], Field(min_length=1), AfterValidator(lambda v: list(check_fields(v, "fields")))]
PositiveInt = Annotated[int, Field(ge=1)]
RunNames = Annotated[list[str], Field(min_length=1)]  # pretrain.train_runs: the runs `dvc repro` trains
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Seeds = Annotated[list[NonNegativeInt], Field(min_length=1)]


def describe_errors(error: ValidationError, where: str) -> str:
    """One line per problem: ``<where>.<key path>: <message> (got <value>)``."""
    lines = []
    for e in error.errors():
        key = ".".join(str(p) for p in (where, *e["loc"]) if p != "")
        if e["type"] == "value_error":  # raised by a validator whose message names its own keys
            lines.append(f"{key}: {str(e['ctx']['error'])}")
            continue
        got = "" if e["type"] == "missing" else f" (got {e['input']!r})"
        lines.append(f"{key}: {e['msg']}{got}")
    return "\n".join(lines)


def validate_section(model: type[M], value: Any, where: str) -> M:
    """``model`` validated from ``value`` (a params mapping); ParamsError naming every bad key."""
    try:
        return model.model_validate(value)
    except ValidationError as e:
        raise ParamsError(describe_errors(e, where)) from None


def validate_part(model: type[M], value: Any, where: str) -> M:
    """Like ``validate_section``, for a part checked inside another model's validator (a ValueError whose
    message names every bad key under ``where``)."""
    try:
        return model.model_validate(value)
    except ValidationError as e:
        raise ValueError(describe_errors(e, where)) from None


def read_section(path: str | Path, name: str) -> Any:
    """The raw ``name`` section of a params file (ParamsError when the file or section is missing)."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: not found (run from the repository root)")
    params = yaml.safe_load(path.read_text()) or {}
    if name not in params:
        raise ParamsError(f"{path}: no section {name!r}")
    return params[name]


def load_section(model: type[M], path: str | Path, name: str) -> M:
    """Section ``name`` of the params file at ``path``, validated by ``model``."""
    return validate_section(model, read_section(path, name), f"{Path(path).name}: {name}")


def deep_merge(base: dict, override: dict) -> dict:
    """``base`` updated recursively by ``override`` (mappings merge key by key; lists and scalars are replaced):
    how a profile (params.tiny.yaml, params.paper.yaml, an arm of params.study.yaml) applies to params.yaml."""
    out = dict(base)
    for key, value in override.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_fields(path: str | Path) -> tuple[str, ...]:
    """The top-level ``fields`` list (the pretraining fields every stage shares)."""
    return tuple(validate_section(_FieldsSection, {"fields": read_section(path, "fields")}, Path(path).name).fields)


class _FieldsSection(StrictParams):
    fields: Fields


def load_train_runs(path: str | Path) -> list[str]:
    """``pretrain.train_runs``: the backbones ``dvc repro`` trains and evaluates (what the summary covers)."""
    section = read_section(path, "pretrain")
    value = section.get("train_runs") if isinstance(section, dict) else None
    return validate_section(_TrainRuns, {"train_runs": value}, f"{Path(path).name}: pretrain").train_runs


class _TrainRuns(StrictParams):
    train_runs: RunNames
