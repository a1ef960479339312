"""The ``teacher:`` params section: which frozen language model embeds the targets, and how."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from vivid_med.params import NonNegativeInt, PositiveInt, StrictParams

Variant = Literal["pretrained", "random"]


class TeacherParams(StrictParams):
    """``model`` names the teacher everywhere (the cache stages and ``vivid_online``'s language model)."""

    model: str                   # smollm2 | minilm (bundled) | a local Hugging Face folder | a hub id
    variants: Annotated[list[Variant], Field(min_length=1)]  # random: same architecture, freshly initialised
    template: Literal["chat", "plain"]
    layer: PositiveInt           # the hidden layer pooled (the model is built only up to it)
    pooling: Literal["name_state", "name_tokens", "all_tokens", "last_token"]
    centre: bool                 # subtract the prototype-set mean
    dtype: Literal["float64", "float32", "bfloat16", "float16"]  # float64: the same cache bytes on any CPU
    seed: NonNegativeInt         # the random variant's weights
    trust_remote_code: bool
