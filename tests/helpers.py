"""Params for tests: the repository's ``params.yaml`` sections with overrides (params.yaml is where values live)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from vivid_med.params import deep_merge

REPO = Path(__file__).resolve().parents[1]
#: A ViT small enough for unit tests: 32 px, patch 8 (16 tokens + CLS), width 32, one block.
TINY_VIT = {"model": "vit_tiny_patch16_224", "img_size": 32, "patch_size": 8, "in_chans": 1, "pretrained": False,
            "kwargs": {"depth": 1, "embed_dim": 32, "num_heads": 2}}


@lru_cache(maxsize=1)
def _params_text() -> str:
    return (REPO / "params.yaml").read_text()


def params(**overrides: Any) -> dict:
    """The whole params.yaml, deep-merged with ``overrides`` (section name -> partial section)."""
    return deep_merge(yaml.safe_load(_params_text()), overrides)


def section(name: str, **overrides: Any) -> Any:
    """One section of params.yaml with ``overrides`` deep-merged in."""
    return params(**{name: overrides})[name]


def write_params(folder: Path, replace: dict | None = None, **overrides: Any) -> Path:
    """``folder/params.yaml``: the repository's params with ``overrides`` merged in and the sections of
    ``replace`` replaced whole; returns its path."""
    path = Path(folder) / "params.yaml"
    path.write_text(yaml.safe_dump({**params(**overrides), **(replace or {})}, sort_keys=False))
    return path


def write_runtime(path: Path, **sections: Any) -> Path:
    """A runtime file (``vivid_med.runtime``) at ``path`` with these sections; returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(sections))
    return path


def tiny_common(**overrides: Any) -> dict:
    """``pretrain.common`` for a few-second run on a tiny ViT (``TINY_VIT``) at batch 8."""
    return section("pretrain", common={**TINY_VIT, "steps": 3, "batch_size": 8, "lr_vit": 1e-3, "lr_head": 1e-3,
                                       "warmup_steps": 1, **overrides})["common"]


def train_params(**overrides: Any):
    """``TrainParams`` of ``tiny_common(**overrides)``."""
    from vivid_med.train import TrainParams

    common = tiny_common(**overrides)
    return TrainParams(**{k: common[k] for k in TrainParams.model_fields})


def backbone_params(**overrides: Any):
    from vivid_med.student import BackboneParams

    return BackboneParams(**{**TINY_VIT, **overrides})


def objective_config(name: str, **overrides: Any):
    """The typed config of objective ``name`` from the params.yaml run of the same name, with overrides."""
    from vivid_med.objectives import OBJECTIVES
    from vivid_med.pretrain import CommonParams

    run = {k: v for k, v in section("pretrain")["runs"][name].items() if k not in CommonParams.model_fields}
    return OBJECTIVES[name].Config.model_validate({**run, **overrides})
