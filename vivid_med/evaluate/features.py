"""Frozen-backbone feature extraction, cached once per (backbone, image set) in an .npz file.

A probe then costs one forward pass per image instead of one per training step.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from vivid_med.imaging import MEAN, STD, to_tensor
from vivid_med.io import atomic_path
from vivid_med.runtime import resolve_device


def input_spec(model: nn.Module) -> tuple[int, int]:
    """(image size, input channels) a timm ViT expects."""
    size = model.patch_embed.img_size
    return int(size[0] if isinstance(size, (tuple, list)) else size), int(model.patch_embed.proj.in_channels)


def prepare(images: np.ndarray, size: int, in_chans: int) -> torch.Tensor:
    """uint8 [B, H, W] -> normalised float [B, in_chans, size, size] (bilinear, antialiased resize)."""
    x = to_tensor(np.ascontiguousarray(images))
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.expand(-1, in_chans, -1, -1) if x.shape[1] != in_chans else x


class RowView:
    """Lazy view of some rows of a memory-mapped image store: uint8 [N, H, W] read a batch at a time, so a
    dataset of any size is never loaded into memory whole. Supports ``len``, ``.shape`` and indexing by a slice
    or an index array (returns an ndarray)."""

    def __init__(self, pixels: np.ndarray, rows: np.ndarray) -> None:
        self.pixels, self.rows = pixels, np.asarray(rows)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self.pixels.shape[1:])

    def __getitem__(self, index) -> np.ndarray:
        return np.asarray(self.pixels[self.rows[index]])


@torch.no_grad()
def extract(model: nn.Module, images: np.ndarray | RowView, batch_size: int = 128, desc: str = "features",
            device: str = "auto") -> np.ndarray:
    """Pooled (pre-logits) features float32 [N, D] of uint8 images [N, H, W]; model in eval mode, moved to
    ``device`` (auto: a CUDA GPU if any). The features do not depend on ``batch_size`` (tested)."""
    model.eval().to(resolve_device(device))
    size, chans = input_spec(model)
    dev = next(model.parameters()).device
    out = []
    for i in tqdm(range(0, len(images), batch_size), desc=desc, unit="batch", leave=False):
        x = prepare(images[i:i + batch_size], size, chans).to(dev)
        out.append(model.forward_head(model.forward_features(x), pre_logits=True).float().cpu().numpy())
    dim = model.num_features
    return np.concatenate(out) if out else np.zeros((0, dim), np.float32)


#: Bump when the preprocessing or pooling of ``extract`` changes: cached features made before are then stale.
FEATURE_VERSION = "1"


def cache_key(model: nn.Module, images: np.ndarray | RowView, chunk: int = 4096) -> str:
    """sha256 over the feature code version, the backbone's weights and the image bytes (the cache key);
    images are read ``chunk`` at a time (the same bytes, in order, as the whole array)."""
    h = hashlib.sha256(f"{FEATURE_VERSION}:{MEAN}:{STD}".encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    h.update(str(tuple(images.shape)).encode())
    for i in range(0, len(images), chunk):
        h.update(np.ascontiguousarray(images[i:i + chunk]).tobytes())
    return h.hexdigest()


def cached_features(path: str | Path, model: nn.Module, images: np.ndarray | RowView,
                    batch_size: int = 128, device: str = "auto") -> np.ndarray:
    """Features [N, D] from ``path`` when its fingerprint matches, else extracted and written there."""
    path = Path(path)
    key = cache_key(model, images)
    if path.exists():
        with np.load(path) as z:
            if str(z["fingerprint"]) == key:
                return z["features"]
    feats = extract(model, images, batch_size, desc=path.stem, device=device)
    with atomic_path(path) as tmp, tmp.open("wb") as f:  # np.savez would add .npz to a bare temporary name
        np.savez(f, features=feats, fingerprint=np.array(key))
    return feats


@torch.no_grad()
def spd_attention_maps(student: nn.Module, images: np.ndarray) -> np.ndarray | None:
    """Per-group SPD attention over the patch grid, float32 [K, G, h, w] (mean over a group's queries).

    ``student`` is ``vivid_med.student.export.load_student(dir)``; None when it has no SPD attention.
    """
    backbone = student.backbone
    size, chans = input_spec(backbone)
    _, _, attn = student(prepare(images, size, chans).to(next(backbone.parameters()).device))
    if attn is None:
        return None
    grid = backbone.patch_embed.grid_size
    maps = attn.mean(2)[..., backbone.num_prefix_tokens:]  # [K, G, N_patches]
    return maps.reshape(*maps.shape[:2], *grid).float().cpu().numpy()
