"""Pretraining data: records + image store -> samples, and a step-indexed batch stream that resumes exactly.

A sample is a dict: ``image`` uint8 [S,S] (augmented), ``states`` int64 [F] (``vivid_med.states`` codes),
``target_row`` int64 (row of the teacher's target embedding, -1 without a teacher) and optionally
``target_text``. Batches for step ``s`` depend only on (seed, s), never on history, so a resumed run sees the
same batches and augmentations as an uninterrupted one, for any number of processes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from vivid_med.params import NonNegativeFloat, Probability, StrictParams


class AugmentParams(StrictParams):
    """Strengths of the paper's augmentations (``pretrain.common.augment``); 0 switches one off."""

    flip: Probability        # horizontal flip probability
    degrees: NonNegativeFloat  # rotation range +- degrees
    translate: Probability   # shift range, fraction of the side
    scale: Probability       # zoom range 1 +- scale
    jitter: NonNegativeFloat   # brightness and contrast jitter


def augmentation(out_size: int, p: AugmentParams) -> v2.Transform:
    """The paper's augmentations on a uint8 tensor [1,S,S]: flip, small affine, light brightness/contrast jitter
    (all off when their strength is 0), resized to ``out_size``."""
    return v2.Compose([
        v2.Resize(out_size, antialias=True),
        v2.RandomHorizontalFlip(p.flip),
        v2.RandomAffine(degrees=p.degrees, translate=(p.translate, p.translate), scale=(1 - p.scale, 1 + p.scale)),
        v2.ColorJitter(brightness=p.jitter, contrast=p.jitter),
    ])


class PretrainDataset(Dataset):
    """Indexed by ``(i, aug_seed)``: sample i, augmented under its own seed (independent of global RNG state).

    pixels: one uint8 [N_k,S,S] array (a memmap) per image store; store: int [n] which store sample i is in;
    rows: int [n] its row there; states: int64 [n,F] state codes; target_rows: int64 [n] or None; texts: n strings or
    None; transform: applied to uint8 [1,S,S] or None.
    """

    def __init__(self, pixels: Sequence[np.ndarray], store: np.ndarray, rows: np.ndarray, states: np.ndarray,
                 target_rows: np.ndarray | None = None, texts: Sequence[str] | None = None,
                 transform: v2.Transform | None = None) -> None:
        n = len(rows)
        for name, arr in (("store", store), ("states", states), ("target_rows", target_rows), ("texts", texts)):
            if arr is not None and len(arr) != n:
                raise ValueError(f"PretrainDataset: {name} has {len(arr)} rows, rows has {n}")
        for k, px in enumerate(pixels):
            r = np.asarray(rows)[np.asarray(store) == k]
            if len(r) and (r.min() < 0 or r.max() >= len(px)):
                raise ValueError(f"PretrainDataset: image row out of range [0, {len(px)}) in store {k}")
        self.pixels, self.store, self.rows = list(pixels), np.asarray(store), np.asarray(rows)
        self.states = torch.as_tensor(states, dtype=torch.long)
        self.target_rows = None if target_rows is None else torch.as_tensor(target_rows, dtype=torch.long)
        self.texts, self.transform = texts, transform

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: list[tuple[int, int]]) -> list[dict[str, Any]]:
        """A micro-batch at once (DataLoader calls this): one RNG fork for all its samples."""
        with torch.random.fork_rng(devices=[]):
            return [self._sample(i, seed) for i, seed in keys]

    def _sample(self, i: int, aug_seed: int) -> dict[str, Any]:
        image = torch.from_numpy(np.array(self.pixels[self.store[i]][self.rows[i]]))[None]  # [1, S, S] uint8
        if self.transform is not None:
            torch.manual_seed(aug_seed)
            image = self.transform(image)
        sample = {"image": image[0], "states": self.states[i], "sample_seed": torch.tensor(aug_seed),
                  "target_row": self.target_rows[i] if self.target_rows is not None else torch.tensor(-1)}
        if self.texts is not None:
            sample["target_text"] = self.texts[i]
        return sample


class StepBatches:
    """Batch sampler: micro-batches of ``(index, aug_seed)`` for optimizer steps ``start..steps-1``.

    Step s draws ``batch_size`` samples (the effective batch) from epoch ``s // (n // batch_size)``'s seeded
    permutation; they are cut into ``grad_accum`` micro-batches, each shared out over ``world`` ranks.
    """

    def __init__(self, n: int, batch_size: int, seed: int, start: int, steps: int, grad_accum: int = 1,
                 world: int = 1, rank: int = 0) -> None:
        if batch_size % (grad_accum * world):
            raise ValueError(f"batch_size {batch_size} is not divisible by grad_accum {grad_accum} x world {world}")
        if n < batch_size:
            raise ValueError(f"{n} training samples are fewer than one batch of {batch_size}")
        self.n, self.batch_size, self.seed, self.start, self.steps = n, batch_size, seed, start, steps
        self.grad_accum, self.world, self.rank = grad_accum, world, rank
        self.micro = batch_size // (grad_accum * world)
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def _permutation(self, epoch: int) -> torch.Tensor:
        """Epoch ``epoch``'s seeded permutation of the samples, kept while the epoch lasts (one draw per epoch,
        not per step: at CheXpert size a draw costs ~20 ms)."""
        if self._epoch != epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=generator)
        return self._perm

    def step_batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(indices [batch_size], aug seeds [batch_size]) of optimizer step ``step``."""
        epoch, k = divmod(step, self.n // self.batch_size)
        idx = self._permutation(epoch)[k * self.batch_size:(k + 1) * self.batch_size]
        seeds = self.seed * 2**32 + step * self.batch_size + torch.arange(self.batch_size)
        return idx, seeds

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start, self.steps):
            idx, seeds = self.step_batch(step)
            chunk = self.micro * self.world
            for a in range(self.grad_accum):
                sl = slice(a * chunk + self.rank, (a + 1) * chunk, self.world)
                yield list(zip(idx[sl].tolist(), seeds[sl].tolist()))

    def __len__(self) -> int:
        return (self.steps - self.start) * self.grad_accum
