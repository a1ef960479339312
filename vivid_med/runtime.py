"""Runtime settings: how fast a stage runs, never what it computes. They are not DVC params (changing one reruns
nothing); they live in an optional ``runtime.yaml`` at the repository root, or the file named by the environment
variable ``VIVID_RUNTIME``, one section per stage. A missing file, section or key takes the default written here
(the one place it is written)::

    pretrain: {num_workers: 4, processes: auto}
    evaluate: {batch_size: 512, device: cuda}

One caveat: ``pretrain.processes`` > 1 (DDP) averages bce's and vivid's losses per process and gives vivid's
contrastive term each process's batch, so their numbers move slightly: compare runs at equal process counts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

import yaml

from vivid_med.params import NonNegativeInt, ParamsError, PositiveInt, StrictParams, validate_section

if TYPE_CHECKING:
    import torch

RUNTIME_FILE = Path("runtime.yaml")
M = TypeVar("M", bound=StrictParams)
Processes = Literal["auto"] | PositiveInt


class ImagesRuntime(StrictParams):
    workers: PositiveInt = 1                 # decode processes (1 = in-process)


class TeacherRuntime(StrictParams):
    batch_size: PositiveInt = 16             # targets per forward pass (each is embedded alone: masks, positions)
    device: str = "auto"                     # auto: this process's CUDA GPU if any, else the CPU
    processes: Processes = "auto"            # auto: one per CUDA GPU (torchrun); an integer forces that many


class PretrainRuntime(StrictParams):
    num_workers: NonNegativeInt = 0          # DataLoader workers (samples depend on their seed only)
    checkpoint_every: PositiveInt = 100      # steps between checkpoints (a resume is exact wherever it starts)
    processes: Processes = "auto"            # auto: one per CUDA GPU (torchrun, NCCL); an integer forces that many


class EvaluateRuntime(StrictParams):
    batch_size: PositiveInt = 128            # images per feature-extraction batch
    device: str = "auto"                     # auto: a CUDA GPU if any, else the CPU


def load_runtime(model: type[M], name: str, path: str | Path | None = None) -> M:
    """Section ``name`` of the runtime file (``path``, else $VIVID_RUNTIME, else runtime.yaml), defaults filled in."""
    path = Path(path or os.environ.get("VIVID_RUNTIME") or RUNTIME_FILE)
    doc = yaml.safe_load(path.read_text()) if path.is_file() else None
    if doc is not None and not isinstance(doc, dict):
        raise ParamsError(f"{path}: expected a mapping of stage sections, got {type(doc).__name__}")
    return validate_section(model, (doc or {}).get(name) or {}, f"{path.name}: {name}")


def n_processes(value: int | str) -> int:
    """``auto`` -> the number of CUDA GPUs (at least 1); an integer as given."""
    import torch

    return max(1, torch.cuda.device_count()) if value == "auto" else int(value)


def resolve_device(device: str) -> "torch.device":
    """``auto`` -> this process's CUDA device (LOCAL_RANK) if one exists, else the CPU; anything else as named."""
    import torch

    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")
