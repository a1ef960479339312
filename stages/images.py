"""Stage ``images``: data/records/<dataset>.parquet -> data/images/<dataset>/ (pixels.npy, index.parquet,
rejects.parquet), and metrics/images.json (counts per dataset).

Params and inputs are checked before any store is touched. Each store is built completely in a temporary folder
beside it and swapped into place, then metrics/images.json is written (atomically too): a failure or a kill at
any point leaves every store either as it was or complete and new. The next run removes what a killed one left.

Usage: ``python -m stages.images [DATASET ...]`` (default: every records table).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from stages._params import runtime, section
from vivid_med.imaging import ImagesParams, build_store
from vivid_med.io import atomic_dir, write_json
from vivid_med.runtime import ImagesRuntime
from vivid_med.tables import counts_line, read_records

RECORDS, OUT, METRICS = Path("data/records"), Path("data/images"), Path("metrics/images.json")


def dataset_info(name: str) -> dict:
    """``data/records/<name>.json`` (the dataset root and the synthetic flag), its root checked to be a folder."""
    info_path, table = RECORDS / f"{name}.json", RECORDS / f"{name}.parquet"
    for path in (table, info_path):
        if not path.is_file():
            raise SystemExit(f"{path}: missing (run the records stage; {info_path.name} holds the dataset root)")
    info = json.loads(info_path.read_text())
    if not Path(info["root"]).is_dir():
        raise SystemExit(f"{info_path}: the dataset root {info['root']!r} is not a folder")
    return info


def remove_leftovers() -> None:
    """Delete the temporary folders and files of a run that was killed (``vivid_med.io`` names them
    ``.<name>.<random>.tmp``, and ``.<name>.old`` where it cannot swap two folders in one step)."""
    for path in [*OUT.glob(".*.tmp"), *OUT.glob(".*.old"), *METRICS.parent.glob(f".{METRICS.name}.*.tmp")]:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("datasets", nargs="*", help="records tables to decode (default: all)")
    args = ap.parse_args(argv)
    params, settings = section(ImagesParams, "images"), runtime(ImagesRuntime, "images")
    names = args.datasets or sorted(
        p.name.removesuffix(".parquet") for p in RECORDS.glob("*.parquet") if not p.name.endswith(".rejects.parquet"))
    if not names:
        raise SystemExit(f"{RECORDS}: no records tables (run the records stage first)")
    infos = {name: dataset_info(name) for name in names}
    window = tuple(params.window) if params.window else None
    metrics = json.loads(METRICS.read_text()) if args.datasets and METRICS.exists() else {}
    remove_leftovers()
    for name, info in infos.items():
        records = read_records(RECORDS / f"{name}.parquet")
        with atomic_dir(OUT / name) as tmp:
            counts = build_store(records, Path(info["root"]), tmp, params.size, window, settings.workers,
                                 params.max_pixels, label=name)
        metrics[name] = {**counts, "synthetic": info.get("synthetic", False)}
        print(f"images {name}: {counts_line(counts)}")
    write_json(METRICS, metrics, indent=2, sort_keys=True)


if __name__ == "__main__":
    main()
