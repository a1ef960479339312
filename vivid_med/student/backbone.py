"""The student: any timm Vision Transformer, created by name with image and patch size from a config."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import timm
import torch.nn as nn


@dataclass(frozen=True)
class BackboneConfig:
    """How to build the student ViT with ``timm.create_model`` (``kwargs`` go straight to timm, e.g. depth)."""

    model_name: str = "vit_tiny_patch16_224"
    img_size: int = 64
    patch_size: int = 8
    in_chans: int = 1
    pretrained: bool = False
    kwargs: dict[str, Any] = field(default_factory=dict)

    def timm_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``timm.create_model`` that rebuild this architecture (no weights)."""
        return {"model_name": self.model_name, "num_classes": 0, "img_size": self.img_size,
                "patch_size": self.patch_size, "in_chans": self.in_chans, **self.kwargs}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def create_backbone(cfg: BackboneConfig) -> nn.Module:
    """A timm ViT without classifier: ``forward_features(x [B,C,S,S]) -> [B,1+N,D]``.

    ``pretrained=True`` asks timm for its weights (the hub, or timm's cache; off by default), resampling the
    patch embedding and position embedding to ``patch_size`` / ``img_size`` and summing RGB to ``in_chans``.
    """
    model = timm.create_model(pretrained=cfg.pretrained, **cfg.timm_kwargs())
    if not hasattr(model, "forward_features") or not hasattr(model, "num_prefix_tokens"):
        raise ValueError(f"{cfg.model_name}: not a timm Vision Transformer (no token output)")
    return model


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
