"""Load a frozen teacher (causal LM or text encoder) from a local checkpoint folder, and fingerprint it.

A teacher is identified by a sha256 fingerprint of its weights and tokenizer files, recorded with
everything made from it. Variants: ``pretrained`` (the checkpoint's weights) and ``random`` (the same
architecture, freshly initialised from a seed: the ablation that tells whether language knowledge matters).
For the cached mode the model is built only up to the pooled layer: later layers and the LM head are
never constructed, so they cost neither memory nor time.
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from vivid_med.runtime import resolve_device
from vivid_med.teacher.convert import is_causal_lm

VARIANTS = ("pretrained", "random")
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json",
    "merges.txt", "tokenizer.model", "chat_template.jinja", "added_tokens.json",
)
DTYPES = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Teacher:
    """A frozen teacher: ``model`` (eval mode, no grads), its tokenizer and identity.

    ``layer`` is the depth the model was built to (None: full depth); ``n_layers`` the checkpoint's depth.
    """

    model: nn.Module
    tokenizer: object
    name: str
    variant: str
    fingerprint: str
    causal: bool
    n_layers: int
    layer: int | None
    hidden_size: int
    seed: int | None


@contextmanager
def _quiet():
    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        yield
    finally:
        logging.set_verbosity(level)


def _sha_files(paths: list[Path], h: "hashlib._Hash") -> None:
    for path in paths:
        h.update(path.name.encode() + b"\0")
        with path.open("rb") as f:
            while chunk := f.read(1 << 22):
                h.update(chunk)


def tokenizer_files(folder: Path) -> list[Path]:
    return sorted(p for p in (folder / n for n in TOKENIZER_FILES) if p.is_file())


def fingerprint_folder(folder: Path) -> str:
    """sha256 over the safetensors weight files and tokenizer files of a checkpoint folder."""
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        raise FileNotFoundError(f"teacher folder {folder}: no *.safetensors weights (run stage teacher_weights)")
    h = hashlib.sha256()
    _sha_files(weights + tokenizer_files(folder), h)
    return h.hexdigest()


def fingerprint_module(model: nn.Module, folder: Path) -> str:
    """sha256 over a module's tensors (name, dtype, shape, bytes) and the folder's tokenizer files."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\0".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    _sha_files(tokenizer_files(folder), h)
    return h.hexdigest()


def read_config(folder: Path, trust_remote_code: bool = False):
    """The checkpoint's config; a clear error if the folder or its config.json is missing."""
    from transformers import AutoConfig

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"teacher folder {folder}: missing (no config.json); run `dvc repro teacher_weights` "
            f"or point teacher.model at a Hugging Face checkpoint folder"
        )
    return AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)


def check_layer(layer: int, n_layers: int, folder: Path) -> None:
    if not isinstance(layer, int) or isinstance(layer, bool) or not 1 <= layer <= n_layers:
        raise ValueError(f"teacher layer {layer!r} out of range for {folder} (1..{n_layers} hidden layers)")


def load_teacher(
    folder: str | Path,
    variant: str = "pretrained",
    layer: int | None = None,
    head: bool = False,
    dtype: str = "float32",
    device: str = "cpu",
    seed: int = 0,
    trust_remote_code: bool = False,
) -> Teacher:
    """Load the teacher in ``folder`` frozen and in eval mode.

    ``layer``: build only the first ``layer`` blocks (the cached mode pools that layer; its output is
    the un-normalised block output, equal to the full model's ``hidden_states[layer]``); None keeps all.
    ``head``: load the causal-LM head too (online mode); otherwise the bare model (hidden states only).
    """
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    folder = Path(folder)
    if variant not in VARIANTS:
        raise ValueError(f"teacher variant {variant!r}: expected one of {VARIANTS}")
    if dtype not in DTYPES:
        raise ValueError(f"teacher dtype {dtype!r}: expected one of {list(DTYPES)}")
    config = read_config(folder, trust_remote_code)
    causal = is_causal_lm(config)
    if head and not causal:
        raise ValueError(f"teacher {folder}: {config.architectures} is not a causal LM (online mode needs one)")
    n_layers = config.num_hidden_layers
    if layer is not None:
        check_layer(layer, n_layers, folder)
        config.num_hidden_layers = layer
        if getattr(config, "layer_types", None):
            config.layer_types = config.layer_types[:layer]
        if layer < n_layers:  # hidden_states[-1] is then the block output, not the final-normed one
            config.tie_last_hidden_states = False
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    auto = AutoModelForCausalLM if head else AutoModel
    if variant == "pretrained":
        fingerprint = fingerprint_folder(folder)
        with _quiet():  # the load report would list every skipped layer as "unexpected"
            model = auto.from_pretrained(folder, config=config, dtype=DTYPES[dtype], trust_remote_code=trust_remote_code)
    else:
        torch.manual_seed(seed)
        model = auto.from_config(config, dtype=torch.float32, trust_remote_code=trust_remote_code)
        fingerprint = fingerprint_module(model, folder)
        model = model.to(DTYPES[dtype])
    model.requires_grad_(False).eval().to(resolve_device(device))
    return Teacher(
        model=model, tokenizer=tokenizer, name=folder.name,
        variant=variant, fingerprint=fingerprint, causal=causal, n_layers=n_layers, layer=layer,
        hidden_size=config.hidden_size, seed=seed if variant == "random" else None,
    )
