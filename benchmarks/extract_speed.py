"""Reports per second of the rule extractor on one core, over the IU dev reports repeated to >= 20,000.

A naive baseline runs in the same process on the same reports: one regex per field (CheXpert's mention stems)
and a "no/without/negative for" check per sentence, the simplest labeller of the kind. Prints JSON; no report
text. Usage: python benchmarks/extract_speed.py [--reports CSV] [--min-reports 20000] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path

from vivid_med.extract import EXTRACTOR_VERSION, extract_report
from vivid_med.extract.scoring import read_reports

REPO = Path(__file__).resolve().parents[1]
DEFAULT_REPORTS = REPO.parent / "shared" / "data" / "iu_xray_reports_dev" / "reports.csv"
NAIVE = {f: re.compile(p, re.I) for f, p in {
    "cardiomegaly": r"cardiomegaly|enlarged heart|heart (?:size )?(?:is )?enlarged",
    "lung_opacity": r"opaci|infiltrat|airspace disease|scar", "lung_lesion": r"nodul|mass\b|neoplasm|tumor",
    "edema": r"edema|vascular congestion|\bchf\b", "consolidation": r"consolidat", "pneumonia": r"pneumonia|infect",
    "atelectasis": r"atelecta|collapse", "pneumothorax": r"pneumothora", "pleural_effusion": r"effusion|pleural fluid",
    "pleural_other": r"pleural thickening|fibrothorax|pleural scar", "fracture": r"fracture",
    "support_devices": r"\btube\b|\blines?\b|picc|catheter|pacemaker|pacer|hardware|device",
}.items()}
NAIVE_NEG = re.compile(r"\b(?:no|without|negative for|free of)\b", re.I)
NAIVE_SENT = re.compile(r"(?<=[.!?])\s+")


def naive_label(text: str) -> dict[str, str]:
    """Baseline: a field is absent when its sentence has a negation word anywhere, else present."""
    out: dict[str, str] = {}
    for sent in NAIVE_SENT.split(text):
        neg = NAIVE_NEG.search(sent) is not None
        for f, rx in NAIVE.items():
            if rx.search(sent) and out.get(f) != "present":
                out[f] = "absent" if neg else "present"
    return out


def rate(fn, texts: list[str], min_reports: int) -> tuple[float, int]:
    """(reports/s, n) of ``fn`` over ``texts`` repeated until at least ``min_reports`` were processed."""
    for t in texts[:50]:
        fn(t)  # warm-up (lexicon load, regex caches)
    n, t0 = 0, time.perf_counter()
    while n < min_reports:
        for t in texts:
            fn(t)
        n += len(texts)
    return n / (time.perf_counter() - t0), n


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reports", default=str(DEFAULT_REPORTS))
    ap.add_argument("--min-reports", type=int, default=20000)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    texts = list(read_reports(args.reports).values())
    ours, n = rate(extract_report, texts, args.min_reports)
    naive, n2 = rate(naive_label, texts, args.min_reports)
    res = {"extractor": EXTRACTOR_VERSION, "n_distinct_reports": len(texts),
           "rule_extractor_reports_per_s": round(ours, 1), "rule_extractor_n": n,
           "naive_regex_reports_per_s": round(naive, 1), "naive_regex_n": n2, "cores": 1}
    print(json.dumps(res, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    return res


if __name__ == "__main__":
    main()
