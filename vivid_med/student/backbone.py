"""The student: any timm Vision Transformer, created by name with image and patch size from a config."""

from __future__ import annotations

from typing import Any

import timm
import torch.nn as nn

from vivid_med.params import PositiveInt, StrictParams


class BackboneParams(StrictParams):
    """How to build the student ViT with ``timm.create_model`` (``kwargs`` go straight to timm, e.g. depth)."""

    model: str            # a timm Vision Transformer name, e.g. vit_tiny_patch16_224
    img_size: PositiveInt
    patch_size: PositiveInt
    in_chans: PositiveInt
    kwargs: dict[str, Any]
    pretrained: bool      # true: timm's weights (needs the hub or timm's cache)

    def timm_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``timm.create_model`` that rebuild this architecture (no weights)."""
        return {"model_name": self.model, "num_classes": 0, "img_size": self.img_size,
                "patch_size": self.patch_size, "in_chans": self.in_chans, **self.kwargs}


def create_backbone(cfg: BackboneParams) -> nn.Module:
    """A timm ViT without classifier: ``forward_features(x [B,C,S,S]) -> [B,1+N,D]``.

    ``pretrained=True`` asks timm for its weights (the hub, or timm's cache; off by default), resampling the
    patch embedding and position embedding to ``patch_size`` / ``img_size`` and summing RGB to ``in_chans``.
    """
    model = timm.create_model(pretrained=cfg.pretrained, **cfg.timm_kwargs())
    if not hasattr(model, "forward_features") or not hasattr(model, "num_prefix_tokens"):
        raise ValueError(f"{cfg.model}: not a timm Vision Transformer (no token output)")
    return model


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
