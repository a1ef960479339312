"""Stage ``images``: data/records/<dataset>.parquet -> data/images/<dataset>/ (pixels.npy, index.parquet,
rejects.parquet), and metrics/images.json (counts per dataset).

Usage: ``python -m stages.images [DATASET ...]`` (default: every records table).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from stages._params import section
from vivid_med.imaging import ImagesParams, build_store
from vivid_med.tables import counts_line, read_records

RECORDS, OUT, METRICS = Path("data/records"), Path("data/images"), Path("metrics/images.json")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("datasets", nargs="*", help="records tables to decode (default: all)")
    args = ap.parse_args(argv)
    params = section(ImagesParams, "images")
    names = args.datasets or sorted(
        p.name.removesuffix(".parquet") for p in RECORDS.glob("*.parquet") if not p.name.endswith(".rejects.parquet"))
    if not names:
        raise SystemExit(f"{RECORDS}: no records tables (run the records stage first)")
    window = tuple(params.window) if params.window else None
    metrics = json.loads(METRICS.read_text()) if args.datasets and METRICS.exists() else {}
    for name in names:
        info_path = RECORDS / f"{name}.json"
        if not info_path.exists():
            raise FileNotFoundError(f"{info_path}: missing (it holds the dataset root of {name})")
        info = json.loads(info_path.read_text())
        records = read_records(RECORDS / f"{name}.parquet")
        shutil.rmtree(OUT / name, ignore_errors=True)
        counts = build_store(records, Path(info["root"]), OUT / name, params.size, window, params.workers)
        metrics[name] = {**counts, "synthetic": info.get("synthetic", False)}
        print(f"images {name}: {counts_line(counts)}")
    METRICS.parent.mkdir(parents=True, exist_ok=True)
    METRICS.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
