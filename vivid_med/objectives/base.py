"""What every pretraining objective is: a registered ``nn.Module`` built from its typed config.

An objective declares what it needs (``Needs``); the pretraining library (``vivid_med.pretrain``) provides those
needs generically (``Resources``, and extra batch entries), so a new objective is one class plus a params entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch.nn as nn
from torch import Tensor

from vivid_med.params import StrictParams
from vivid_med.registry import Registry


@dataclass(frozen=True)
class Needs:
    """What an objective asks the pretraining library for.

    teacher_cache: the cached teacher embeddings of ``config.teacher`` (``data/teacher/<variant>/``); each batch
        then carries ``target_row`` (int64 [B], the row of the sample's target embedding).
    language_model: the frozen causal LM of params ``teacher.model`` (variant ``config.teacher``), with its head.
    target_text: each batch carries ``target_text`` (B target JSON strings).
    """

    teacher_cache: bool = False
    language_model: bool = False
    target_text: bool = False


@dataclass
class Resources:
    """What an objective is built with: the pretraining fields, the run's seed and what its ``Needs`` asked for
    (``teacher_cache``: a ``vivid_med.teacher.cache.TeacherCache``; ``language_model``: a
    ``vivid_med.teacher.load.Teacher`` loaded with its LM head)."""

    fields: tuple[str, ...]
    seed: int
    teacher_cache: Any = None
    language_model: Any = None


class ObjectiveConfig(StrictParams):
    """The keys of ``pretrain.runs.<run>`` an objective reads (each objective subclasses it with its own)."""

    objective: str


class Objective(nn.Module):
    """Base class. ``forward(tokens [B,1+N,D], pooled [B,D], batch) -> {"loss": total, <named terms>}``.

    ``tokens`` are the ViT's output tokens, ``pooled`` its pre-logits feature (what a probe sees), ``batch`` holds
    ``states`` (int64 [B,F], ``vivid_med.states`` codes: present 0, absent 1, uncertain 2, null 3) and what the
    objective's ``needs`` asked for. Extra entries (accuracies) are detached. Objectives with query groups keep
    them as ``self.spd`` (export keeps it for attention plots).
    """

    Config: ClassVar[type[ObjectiveConfig]] = ObjectiveConfig
    needs: ClassVar[Needs] = Needs()

    @classmethod
    def build(cls, config: ObjectiveConfig, dim: int, resources: Resources) -> "Objective":
        """The objective for ``config`` on a backbone of width ``dim``."""
        raise NotImplementedError

    def forward(self, tokens: Tensor, pooled: Tensor, batch: dict[str, Any]) -> dict[str, Tensor]:
        raise NotImplementedError


#: Objectives by the name a run's ``objective:`` key gives.
OBJECTIVES: Registry[type[Objective]] = Registry("objective")

#: The ``objective:`` value of a run that trains nothing (the randomly initialised backbone is exported).
NO_OBJECTIVE = "none"
