"""Export a student in timm's own format (what ``timm.models.save_for_hf`` writes), the SPD heads beside it.

Folder layout (``models/<run>/``, built aside and swapped into place whole by ``vivid_med.io.atomic_dir``, so a
killed export leaves the previous folder or none, never a partial one):

- ``config.json``: timm's: ``architecture``, ``num_classes`` (0), ``num_features``, ``global_pool``, ``model_args``
  (``img_size``, ``patch_size``, ``in_chans``, ``kwargs``...) and ``pretrained_cfg`` with vivid-med's preprocessing
  (``input_size``, per-channel ``mean``/``std``, ``interpolation``, ``crop_pct``, ``crop_mode``), so
  ``timm.data.resolve_data_config({}, model=m)`` + ``timm.data.create_transform`` reproduce it.
- ``model.safetensors``: the ViT's state dict alone.
- ``vivid_heads.json``: ``objective``, ``spd`` (``{groups, queries, heads}``, ``"off"`` or null), ``heads`` (the
  heads file, or null when the objective has no trainable weights).
- ``heads.safetensors``: the objective's trainable weights (SPD, projector, ...), for attention-map plots.

One line of timm loads the backbone (timm ignores the two vivid files)::

    timm.create_model("local-dir:models/vivid", pretrained=True)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file
from timm.models import save_for_hf

from vivid_med.imaging import MEAN, STD
from vivid_med.io import atomic_dir
from vivid_med.student.backbone import BackboneParams, count_params
from vivid_med.student.spd import SPD, PooledTokens, SPDParams, build_spd

CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"   # timm's names (timm.models._hub)
HEADS_FILE, SIDECAR_FILE = "heads.safetensors", "vivid_heads.json"


def data_config(in_chans: int) -> dict[str, Any]:
    """vivid-med's preprocessing in timm's terms: ``(x/255 - MEAN) / STD`` on every channel; a larger image is
    padded to a square and area-averaged (``box``) to the input size, nothing cropped (``crop_pct`` 1)."""
    return {"mean": (MEAN,) * in_chans, "std": (STD,) * in_chans, "interpolation": "box", "crop_pct": 1.0,
            "crop_mode": "border"}


def export_backbone(model: nn.Module, out_dir: str | Path, cfg: BackboneParams, tag: str) -> Path:
    """Write the ViT in timm's format (``config.json`` + ``model.safetensors``) into the existing folder
    ``out_dir`` with timm's own writer; ``tag`` names the weights in ``pretrained_cfg``. Returns the weights file."""
    model_args = {k: v for k, v in cfg.timm_kwargs().items() if k != "model_name"}
    save_for_hf(model, str(out_dir), model_config={"pretrained_cfg": {"tag": tag}}, model_args=model_args,
                safe_serialization=True, data_config=data_config(cfg.in_chans))
    return Path(out_dir) / WEIGHTS_FILE


def _spd_shape(objective: nn.Module | None) -> dict[str, int] | str | None:
    spd = getattr(objective, "spd", None)
    if isinstance(spd, SPD):
        return {"groups": spd.groups, "queries": spd.n_queries, "heads": spd.heads}
    return "off" if isinstance(spd, PooledTokens) else None


def export_student(backbone: nn.Module, objective: nn.Module | None, out_dir: str | Path, cfg: BackboneParams,
                   objective_name: str) -> dict[str, Any]:
    """Replace ``out_dir`` with the backbone in timm's format plus the objective's heads (a frozen teacher is not
    saved). Returns the sidecar's contents with the backbone's ``n_params`` and ``bytes``."""
    heads = {} if objective is None else {
        k: v.detach().cpu().contiguous() for k, v in objective.state_dict().items() if not k.startswith("teacher.")}
    sidecar = {"objective": objective_name, "spd": _spd_shape(objective), "heads": HEADS_FILE if heads else None}
    with atomic_dir(out_dir) as tmp:
        weights = export_backbone(backbone, tmp, cfg, f"vivid_med_{objective_name}")
        if heads:
            save_file(heads, tmp / HEADS_FILE, metadata={"format": "pt"})
        (tmp / SIDECAR_FILE).write_text(json.dumps(sidecar, indent=2) + "\n")
        n_bytes = weights.stat().st_size
    return {**sidecar, "n_params": count_params(backbone), "bytes": n_bytes}


def read_sidecar(model_dir: str | Path) -> dict[str, Any] | None:
    """``vivid_heads.json`` of an export, or None where there is none (e.g. ``models/product``)."""
    path = Path(model_dir) / SIDECAR_FILE
    return json.loads(path.read_text()) if path.exists() else None


def load_backbone(model_dir: str | Path) -> nn.Module:
    """``timm.create_model("local-dir:<model_dir>", pretrained=True)`` in eval mode: a timm ViT (num_classes=0)
    with the exported weights."""
    config = Path(model_dir) / CONFIG_FILE
    if not config.exists():
        raise FileNotFoundError(f"{config}: no exported backbone here (run the pretrain stage)")
    if "architecture" not in json.loads(config.read_text()):
        raise ValueError(f"{config}: not timm's format (an export older than it?): rerun its pretrain stage")
    return timm.create_model(f"local-dir:{model_dir}", pretrained=True).eval()


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
    """The exported backbone (``load_backbone``) with its SPD module restored from ``heads.safetensors`` (None
    when the export has no SPD, or no sidecar)."""
    model_dir = Path(model_dir)
    backbone = load_backbone(model_dir)
    shape = (read_sidecar(model_dir) or {}).get("spd")
    spd = None
    if shape is not None:
        spd = build_spd(backbone.num_features, None if shape == "off" else SPDParams(**shape))
        heads = load_file(model_dir / HEADS_FILE)
        spd.load_state_dict({k[len("spd."):]: v for k, v in heads.items() if k.startswith("spd.")})
    return ExportedStudent(backbone, spd).eval()
