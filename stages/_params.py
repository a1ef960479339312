"""Read one stage's section of params.yaml (the only place stages read configuration)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

PARAMS_FILE = Path("params.yaml")


def load_section(name: str, path: Path = PARAMS_FILE) -> dict[str, Any]:
    """Return ``params.yaml[name]``; a clear error when the file or section is missing."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found (run stages from the repository root)")
    params = yaml.safe_load(path.read_text()) or {}
    if name not in params:
        raise KeyError(f"{path}: no section {name!r}")
    return params[name]
