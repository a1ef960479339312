"""Coder files -> the gold label file ``iu_dev_labels.csv`` and the coders' agreement ``agreement.json``.

Coders code the 12 pathology fields and Support Devices as written (LABELLING_GUIDE.md); this script derives
the rest the same way for everyone: CheXpert's hierarchy (a positive child makes its parent at least as
positive) and No Finding (present when no pathology is present or uncertain). Gold labels:
- frozen (``frozen = 1``): coder A; tuning (``frozen = 0``): coder C;
- ``raw/adjudication.csv`` (study_id, field, first_coder, second_coder, decision, kind, rule) overrides a coded
  state: ``disagreement`` rows settle a coder A/B disagreement on draws 1-150, ``guide_revision`` rows re-code a
  state that a later revision of the guide decides differently (the raw coder files never change).
Usage: python tests/labels/merge_labels.py   (from the repository root; ids and labels only, no report text)
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from sklearn.metrics import cohen_kappa_score

HERE = Path(__file__).resolve().parent
RAW = HERE / "raw"
FIELDS = ("no_finding", "enlarged_cardiomediastinum", "cardiomegaly", "lung_opacity", "lung_lesion", "edema",
          "consolidation", "pneumonia", "atelectasis", "pneumothorax", "pleural_effusion", "pleural_other",
          "fracture", "support_devices")
STATES = ("present", "absent", "uncertain", "")
RANK = {"": 0, "absent": 1, "uncertain": 2, "present": 3}
#: CheXpert's hierarchy: child -> parent.
PARENT = {"consolidation": "lung_opacity", "edema": "lung_opacity", "atelectasis": "lung_opacity",
          "pneumonia": "lung_opacity", "lung_lesion": "lung_opacity", "cardiomegaly": "enlarged_cardiomediastinum"}
POSITIVE = ("present", "uncertain")


def read_coder(path: Path) -> dict[str, dict[str, str]]:
    """``{study_id: {field: state}}`` of one coder's CSV (ValueError naming the row on a bad value or id)."""
    out: dict[str, dict[str, str]] = {}
    with open(path, newline="") as f:
        for i, r in enumerate(csv.DictReader(f), start=2):
            bad = [k for k in FIELDS if (r.get(k) or "").strip() not in STATES]
            if bad or not r.get("study_id") or r["study_id"] in out:
                raise ValueError(f"{path}: row {i}: bad value in {bad} or missing/duplicate study_id")
            out[r["study_id"]] = {k: (r[k] or "").strip() for k in FIELDS}
    return out


def derive(coded: dict[str, str]) -> dict[str, str]:
    """The hierarchy and No Finding applied to one coder's row (the coder's own no_finding is ignored)."""
    row = dict(coded)
    for child, parent in PARENT.items():
        if row[child] in POSITIVE and RANK[row[child]] > RANK[row[parent]]:
            row[parent] = row[child]
    pathology = [f for f in FIELDS if f not in ("no_finding", "support_devices")]
    row["no_finding"] = "absent" if any(row[f] in POSITIVE for f in pathology) else "present"
    return row


def kappa(a: dict[str, dict[str, str]], b: dict[str, dict[str, str]]) -> dict:
    """Cohen's kappa per field on the shared ids: over the 4 states and over positive / not positive."""
    ids = sorted(set(a) & set(b))
    out = {"n_reports": len(ids), "fields": {}}
    for f in FIELDS:
        x, y = [a[s][f] for s in ids], [b[s][f] for s in ids]
        px, py = [v in POSITIVE for v in x], [v in POSITIVE for v in y]
        agree = sum(u == v for u, v in zip(x, y)) / len(ids)
        k4 = cohen_kappa_score(x, y) if len(set(x) | set(y)) > 1 else None
        k2 = cohen_kappa_score(px, py) if len(set(px) | set(py)) > 1 else None
        out["fields"][f] = {"agreement": round(agree, 4), "kappa_4state": None if k4 is None else round(k4, 4),
                            "kappa_positive": None if k2 is None else round(k2, 4),
                            "n_pos_a": sum(px), "n_pos_b": sum(py), "disagreements": sum(u != v for u, v in zip(x, y))}
    return out


def main() -> None:
    sample = {r["study_id"]: r for r in csv.DictReader(open(HERE / "iu_sample_20261130.csv", newline=""))}
    with open(HERE / "iu_dev_labels.csv", newline="") as f:
        old = {r["study_id"]: r.get("sample", "20261128") for r in csv.DictReader(f)}
    frozen_ids = [s for s, r in sample.items() if r["split"] == "frozen"]
    a_raw, c_raw = read_coder(RAW / "coder_a.csv"), read_coder(RAW / "coder_c.csv")
    gold: dict[str, tuple[dict[str, str], int, str]] = {}
    for s, row in a_raw.items():
        gold[s] = (derive(row), 1, "20261130" if s in sample else old[s])
    for s, row in c_raw.items():
        if s in gold:
            raise ValueError(f"{s}: coded as frozen (coder A) and tuning (coder C)")
        gold[s] = (derive(row), 0, "20261130" if s in sample else old[s])
    decided: dict[tuple[str, str], str] = {}
    if (RAW / "adjudication.csv").exists():
        with open(RAW / "adjudication.csv", newline="") as f:
            decided = {(r["study_id"], r["field"]): r["decision"] for r in csv.DictReader(f)}
    unknown = sorted({s for s, _ in decided} - set(gold))
    if unknown:
        raise ValueError(f"adjudication.csv names studies nobody coded: {unknown[:3]}")
    raw = {**a_raw, **c_raw}
    for s in {s for s, _ in decided}:
        row = {f: decided.get((s, f), raw[s][f]) for f in FIELDS}
        gold[s] = (derive(row), gold[s][1], gold[s][2])
    if (RAW / "coder_b.csv").exists():
        b_raw = read_coder(RAW / "coder_b.csv")
        report = kappa({s: derive(r) for s, r in a_raw.items()}, {s: derive(r) for s, r in b_raw.items()})
        cases = [(s, f) for s in sorted(set(a_raw) & set(b_raw)) for f in FIELDS if f != "no_finding"
                 and a_raw[s][f] != b_raw[s][f]]
        report["coded_disagreements"] = len(cases)
        report["adjudicated"] = sum(k in decided for k in cases)
        report["guide_revisions"] = len(decided) - report["adjudicated"]
        (HERE / "agreement.json").write_text(json.dumps(report, indent=1) + "\n")
        if report["adjudicated"] < len(cases):
            print(f"{len(cases) - report['adjudicated']} of {len(cases)} coded A/B disagreements not adjudicated "
                  "yet (coder A's label used)")
    missing = [s for s in frozen_ids if s not in gold]
    if missing:
        raise ValueError(f"{len(missing)} frozen draws have no label, e.g. {missing[:3]}")
    with open(HERE / "iu_dev_labels.csv", "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["study_id", *FIELDS, "frozen", "sample"])
        for s in sorted(gold, key=lambda s: (gold[s][1], gold[s][2], s)):
            row, frozen, smp = gold[s]
            w.writerow([s, *(row[f] for f in FIELDS), frozen, smp])
    print(f"wrote {len(gold)} labelled reports: {sum(g[1] for g in gold.values())} frozen, "
          f"{sum(1 - g[1] for g in gold.values())} tuning")


if __name__ == "__main__":
    main()
