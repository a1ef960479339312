"""Export the backbone alone (safetensors + config, loadable by one timm line) and the SPD heads beside it.

Folder layout (``models/<run>/``): ``backbone.safetensors`` (the ViT, no heads), ``config.json``
(``model_name``, ``img_size``, ``patch_size``, ``in_chans``, ``kwargs``, ``timm`` = the full create_model kwargs,
``n_params``, ``bytes``, ``spd``, ``objective``), ``heads.safetensors`` (objective heads: SPD, projector, ...).
One line of timm loads the backbone::

    timm.create_model(**json.load(open("models/vivid/config.json"))["timm"], checkpoint_path="models/vivid/backbone.safetensors")
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from vivid_med.student.backbone import BackboneParams, count_params
from vivid_med.student.spd import SPD, PooledTokens, SPDParams, build_spd

BACKBONE_FILE, HEADS_FILE, CONFIG_FILE = "backbone.safetensors", "heads.safetensors", "config.json"


def _contiguous(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def export_backbone(model: nn.Module, out_dir: str | Path, cfg: BackboneParams,
                    extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``backbone.safetensors`` + ``config.json`` (with ``extra`` merged in); returns the config."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(_contiguous(model.state_dict()), out / BACKBONE_FILE, metadata={"format": "pt"})
    config = {**{k: getattr(cfg, k) for k in BackboneParams.model_fields}, "timm": cfg.timm_kwargs(), "n_params": count_params(model),
              "bytes": (out / BACKBONE_FILE).stat().st_size, **(extra or {})}
    (out / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    return config


def export_student(backbone: nn.Module, objective: nn.Module | None, out_dir: str | Path, cfg: BackboneParams,
                   objective_name: str) -> dict[str, Any]:
    """The backbone (see ``export_backbone``) plus ``heads.safetensors`` (trainable objective weights); the
    config records the objective and the SPD shape (``{groups, queries, heads}``, "off", or None without one)."""
    out = Path(out_dir)
    heads = {} if objective is None else {k: v for k, v in objective.state_dict().items() if not k.startswith("teacher.")}
    spd = getattr(objective, "spd", None)
    shape = ({"groups": spd.groups, "queries": spd.n_queries, "heads": spd.heads} if isinstance(spd, SPD)
             else "off" if isinstance(spd, PooledTokens) else None)
    extra = {"objective": objective_name, "spd": shape if _spd_keys(heads) else None}
    config = export_backbone(backbone, out, cfg, extra)
    if heads:
        save_file(_contiguous(heads), out / HEADS_FILE, metadata={"format": "pt"})
    return config


def _spd_keys(heads: dict[str, torch.Tensor]) -> set[str]:
    return {k for k in heads if k.startswith("spd.")}


def read_config(model_dir: str | Path) -> dict[str, Any]:
    path = Path(model_dir) / CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no exported backbone here (run the pretrain stage)")
    return json.loads(path.read_text())


def load_backbone(model_dir: str | Path) -> nn.Module:
    """A fresh timm ViT (num_classes=0) with the exported weights, in eval mode."""
    model_dir = Path(model_dir)
    config = read_config(model_dir)
    return timm.create_model(**config["timm"], checkpoint_path=str(model_dir / BACKBONE_FILE)).eval()


class ExportedStudent(nn.Module):
    """Backbone + restored SPD, for attention-map plots.

    ``forward(x [B,C,S,S]) -> (tokens [B,1+N,D], spd tokens [B,G*M,D] | None, attention [B,G,M,N] | None)``.
    """

    def __init__(self, backbone: nn.Module, spd: SPD | PooledTokens | None) -> None:
        super().__init__()
        self.backbone, self.spd = backbone, spd

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        tokens = self.backbone.forward_features(x)
        if self.spd is None:
            return tokens, None, None
        z, attn = self.spd(tokens)
        return tokens, z, attn


def load_student(model_dir: str | Path) -> ExportedStudent:
    """The exported backbone with its SPD module restored from ``heads.safetensors`` (None if it had none)."""
    model_dir = Path(model_dir)
    config = read_config(model_dir)
    backbone = load_backbone(model_dir)
    spd = None
    if config.get("spd") is not None and (model_dir / HEADS_FILE).exists():
        heads = load_file(model_dir / HEADS_FILE)
        shape = config["spd"]
        spd = build_spd(backbone.num_features, None if shape == "off" else SPDParams(**shape))
        spd.load_state_dict({k[len("spd."):]: v for k, v in heads.items() if k.startswith("spd.")})
    return ExportedStudent(backbone, spd).eval()
