"""Writing outputs so that a crash never leaves a partial one: a temporary file (or folder) beside the target,
renamed into place only when complete. The previous output stays intact until that rename.

Failpoints: ``failpoint(name)`` kills the process with SIGKILL when the environment variable ``VIVID_FAILPOINT``
equals ``name`` (the fault-injection tests use it; unset, it costs one dict lookup). Every atomic write offers
``commit:<file name>`` (after the new content is complete, before it replaces the old).
"""

from __future__ import annotations

import ctypes
import glob
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_RENAME_EXCHANGE = 2  # renameat2 flag (Linux >= 3.15): swap two paths atomically
_AT_FDCWD = -100


def failpoint(name: str) -> None:
    """SIGKILL this process if ``VIVID_FAILPOINT`` names this point (fault-injection tests only)."""
    if os.environ.get("VIVID_FAILPOINT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; when the block succeeds it replaces ``path`` in one rename.
    On an exception the temporary file is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        failpoint(f"commit:{path.name}")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _sweep(path)


def _sweep(path: Path) -> None:
    """Remove what a killed writer of ``path`` left beside it (``.<name>.*.tmp``), once a new ``path`` is in place."""
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | Path, obj: Any, **dumps: Any) -> Path:
    """``json.dumps(obj, **dumps)`` plus a newline, written atomically."""
    return write_text(path, json.dumps(obj, **dumps) + "\n")


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step (Linux renameat2); False where the system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; when the block succeeds it takes ``path``'s place (an
    atomic swap where the system allows, else two renames) and the old folder is removed afterwards."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes 0700; the output gets the mode a plain mkdir would give
    try:
        yield tmp
        failpoint(f"commit:{path.name}")
        if path.exists() and _exchange(tmp, path):
            shutil.rmtree(tmp)  # tmp now holds the old content
        else:
            old = path.with_name(f".{path.name}.old")
            if path.exists():
                shutil.rmtree(old, ignore_errors=True)
                os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _sweep(path)


def same_file(a: str | Path, b: str | Path) -> bool:
    """True when ``a`` and ``b`` resolve to the same file (an output must never overwrite an input)."""
    a, b = Path(a), Path(b)
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()
