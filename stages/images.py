"""Stage `images`: data/records/<dataset>.parquet -> data/images/<dataset>/ (pixels.npy, index.parquet,
rejects.parquet), and metrics/images.json (counts per dataset).

params (section ``images``): ``size`` (store side, px), ``window`` ([centre, width] in modality units for
DICOM/NIfTI, or null for the file's own VOI LUT / a min-max), ``workers`` (decode processes; 1 = in-process).
Usage: ``python -m stages.images [DATASET ...]`` (default: every records table).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from stages._params import load_section
from vivid_med.imaging import build_store
from vivid_med.tables import counts_line, read_records

RECORDS = Path("data/records")
OUT = Path("data/images")
METRICS = Path("metrics/images.json")


def main(argv: list[str] | None = None) -> None:
    params = load_section("images")
    chosen = sys.argv[1:] if argv is None else argv
    names = chosen or sorted(
        p.name.removesuffix(".parquet") for p in RECORDS.glob("*.parquet") if not p.name.endswith(".rejects.parquet"))
    if not names:
        raise SystemExit(f"{RECORDS}: no records tables (run the records stage first)")
    window = tuple(params["window"]) if params.get("window") else None
    metrics = json.loads(METRICS.read_text()) if chosen and METRICS.exists() else {}
    for name in names:
        info_path = RECORDS / f"{name}.json"
        if not info_path.exists():
            raise FileNotFoundError(f"{info_path}: missing (it holds the dataset root of {name})")
        info = json.loads(info_path.read_text())
        root = Path(info["root"])
        records = read_records(RECORDS / f"{name}.parquet")
        shutil.rmtree(OUT / name, ignore_errors=True)
        counts = build_store(records, root, OUT / name, int(params["size"]), window, int(params.get("workers", 1)))
        metrics[name] = {**counts, "synthetic": info.get("synthetic", False)}
        print(f"images {name}: {counts_line(counts)}")
    METRICS.parent.mkdir(parents=True, exist_ok=True)
    METRICS.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
