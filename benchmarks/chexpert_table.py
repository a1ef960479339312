"""Time the label-table route on a CheXpert-sized train.csv (223,414 rows by default), written in CheXpert's format.

    python benchmarks/chexpert_table.py [--rows 223414] [--images] [--out /tmp/chexpert_bench]

Labels are drawn independently per cell (blank / 1.0 / 0.0 / -1.0, per-field rates near CheXpert's), which
gives more distinct label combinations than the real table: a pessimistic case for the per-combination cache.
``--images`` also writes an empty file per image so the path checks run as on a real copy.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from vivid_med.fields import DISPLAY_NAMES, PRETRAIN_FIELDS
from vivid_med.records import build_records
from vivid_med.sources.chexpert import CheXpert
from vivid_med.tables import write_records, write_rejects

#: (positive, uncertain, negative) rates per field; the rest is blank.
RATES = {"no_finding": (.10, 0, .0), "enlarged_cardiomediastinum": (.05, .06, .10), "cardiomegaly": (.12, .04, .05),
         "lung_opacity": (.47, .03, .03), "lung_lesion": (.04, .01, .01), "edema": (.23, .06, .09),
         "consolidation": (.07, .12, .12), "pneumonia": (.03, .08, .01), "atelectasis": (.15, .15, .01),
         "pneumothorax": (.09, .01, .25), "pleural_effusion": (.39, .05, .15), "pleural_other": (.02, .01, .0),
         "fracture": (.04, .003, .01), "support_devices": (.52, .005, .03)}


def write_table(root: Path, n: int, seed: int = 0) -> pd.DataFrame:
    """train.csv with ``n`` images of about n/3.46 patients (CheXpert's ratio); labels per study, as in CheXpert."""
    rng = np.random.default_rng(seed)
    patient = np.sort(rng.integers(1, int(n / 3.46), n))
    k = pd.Series(patient).groupby(patient).cumcount().to_numpy()
    study, frontal = k // 2 + 1, k % 2 == 0
    view = np.where(frontal, "view1_frontal", "view2_lateral")
    df = pd.DataFrame({"Path": [f"CheXpert-v1.0-small/train/patient{p:05d}/study{s}/{v}.jpg"
                                for p, s, v in zip(patient, study, view)],
                       "Sex": rng.choice(["Female", "Male"], n), "Age": rng.integers(18, 90, n),
                       "Frontal/Lateral": np.where(frontal, "Frontal", "Lateral"),
                       "AP/PA": np.where(frontal, rng.choice(["AP", "PA"], n), "")})
    study_row = np.flatnonzero(frontal)[np.cumsum(frontal) - 1]  # a lateral shares its frontal's labels
    for key, (pos, unc, neg) in RATES.items():
        cells = rng.choice(["1.0", "-1.0", "0.0", ""], n, p=[pos, unc, neg, 1 - pos - unc - neg])
        df[DISPLAY_NAMES[key]] = cells[study_row]
    root.mkdir(parents=True, exist_ok=True)
    df.to_csv(root / "train.csv", index=False)
    return df


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=223414)
    ap.add_argument("--images", action="store_true")
    ap.add_argument("--out", default="/tmp/chexpert_bench")
    args = ap.parse_args()
    root = Path(args.out) / "CheXpert-v1.0-small"
    table = write_table(root, args.rows)
    if args.images:
        for p in table["Path"]:
            f = root / p.split("/", 1)[1]
            f.parent.mkdir(parents=True, exist_ok=True)
            f.touch()
    t0 = time.perf_counter()
    src = CheXpert.at(root).records()
    t1 = time.perf_counter()
    records, rejects = build_records(src, "chexpert", "table", PRETRAIN_FIELDS, check_images=args.images)
    t2 = time.perf_counter()
    write_records(records, Path(args.out) / "records.parquet", PRETRAIN_FIELDS)
    write_rejects(rejects, Path(args.out) / "rejects.parquet")
    t3 = time.perf_counter()
    distinct = len(np.unique(src.labels, axis=0))
    print(json.dumps({"rows": len(table), "accepted": len(records), "rejected": len(rejects),
                      "distinct_label_rows": distinct, "check_images": args.images,
                      "read_s": round(t1 - t0, 2), "build_s": round(t2 - t1, 2), "write_s": round(t3 - t2, 2),
                      "total_s": round(t3 - t0, 2)}, indent=2))


if __name__ == "__main__":
    main()
