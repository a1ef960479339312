"""Draw the 2026-11-30 labelling sample of IU dev reports (run once, before anyone read a report of it).

Writes ``iu_sample_20261130.csv``: ``study_id, draw, split, second_coder``. From the 1,869 dev reports not in the
2026-11-28 sample (``iu_dev_labels.csv``), 450 are drawn with ``random.Random(20261130).sample(sorted(ids), 450)``:
draws 1-250 are frozen (never read by the rule writer; draws 1-150 also coded blind by the second coder),
draws 251-450 are tuning. Usage: python tests/labels/draw_sample.py [REPORTS.csv]
"""

from __future__ import annotations

import csv
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPORTS = HERE.parents[2] / "shared" / "data" / "iu_xray_reports_dev" / "reports.csv"
SEED, N, N_FROZEN, N_SECOND = 20261130, 450, 250, 150


def main(reports: Path = REPORTS) -> None:
    with open(reports, newline="") as f:
        ids = {r["study_id"] for r in csv.DictReader(f)}  # ids only: no report text is read here
    with open(HERE / "iu_dev_labels.csv", newline="") as f:
        done = {r["study_id"] for r in csv.DictReader(f)}
    drawn = random.Random(SEED).sample(sorted(ids - done), N)
    with open(HERE / "iu_sample_20261130.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["study_id", "draw", "split", "second_coder"])
        for k, sid in enumerate(drawn, 1):
            w.writerow([sid, k, "frozen" if k <= N_FROZEN else "tuning", int(k <= N_SECOND)])


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPORTS)
