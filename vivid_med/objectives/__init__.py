"""Pretraining objectives: one module per objective, each an ``Objective`` registered in ``OBJECTIVES``.

| objective | module | needs |
| --- | --- | --- |
| ``vivid`` | vivid.py | teacher cache: SPD tokens matched to cached teacher embeddings |
| ``vivid_online`` | vivid_online.py | the frozen LM and target texts: the paper's soft-prefix token loss |
| ``bce`` | bce.py | labels only: multi-label BCE on the pooled feature |
| ``state_classifier`` | state_classifier.py | labels only: 4 states per field, no language model |

A new objective is a new module here with one registered class, and a ``pretrain.runs`` entry naming it: every
module of this package is imported below, so nothing else is edited (docs/extending.md).
"""

from __future__ import annotations

import importlib
import pkgutil

from vivid_med.objectives.base import NO_OBJECTIVE, OBJECTIVES, Needs, Objective, ObjectiveConfig, Resources

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["NO_OBJECTIVE", "OBJECTIVES", "Needs", "Objective", "ObjectiveConfig", "Resources"]
