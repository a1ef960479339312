"""Side by side on one split of the labelled IU reports: the rule extractor vs the medspaCy ConText labeller.

Per-field F1 and macro-F1 (over the fields with >= 15 and with >= 5 gold positives) of both, each with a 95%
percentile bootstrap interval over reports (2,000 resamples, seed 0; `vivid_med.extract.scoring.bootstrap_f1`),
the paired bootstrap interval of the difference (rules - medspaCy, the same resampled reports for both), and
reports/s of both. The medspaCy labeller (benchmarks/medspacy_labeller/run.py: CheXpert's mention lists, not tuned
further) runs as a subprocess in its own venv (medspaCy 1.3.1 pins spaCy 3.7 -> numpy < 2, which conflicts with
this project's stack); create it with `bash benchmarks/medspacy_labeller/setup.sh`. Prints no report text and no
per-report output.

Usage: python benchmarks/extract_compare.py [--split frozen|tuning] [--out FILE.json]
The frozen split (the default) is the reported one: run it once, at the end, never while tuning rules.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vivid_med.extract import EXTRACTOR_VERSION, extract_report
from vivid_med.extract.scoring import bootstrap_f1, read_labels, read_reports
from vivid_med.fields import FIELDS

REPO = Path(__file__).resolve().parents[1]
REPORTS = REPO.parent / "shared" / "data" / "iu_xray_reports_dev" / "reports.csv"
LABELS = REPO / "tests" / "labels" / "iu_dev_labels.csv"
MEDSPACY = REPO / "benchmarks" / "medspacy_labeller"
MIN_POS = (15, 5)
N_BOOT, SEED = 2000, 0
SPLITS = {"frozen": "1", "tuning": "0"}


def run_medspacy(reports: Path, ids: list[str], min_timed: int) -> dict:
    """States and reports/s from the medspaCy labeller subprocess (SystemExit with the fix if its venv is missing)."""
    py = MEDSPACY / ".venv" / "bin" / "python"
    if not py.exists():
        sys.exit(f"{py} missing: run `bash {MEDSPACY / 'setup.sh'}` first")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "ids.txt").write_text("\n".join(ids))
        out = Path(tmp) / "out.json"
        subprocess.run([str(py), str(MEDSPACY / "run.py"), str(reports), str(out), "--ids", str(Path(tmp) / "ids.txt"),
                        "--min-timed", str(min_timed)], check=True, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
        return json.loads(out.read_text())


def run_rules(texts: list[str], min_timed: int) -> tuple[list[dict], float]:
    """States of every text, and reports/s over the texts repeated to at least ``min_timed``."""
    states = [extract_report(t).states for t in texts]
    n, t0 = 0, time.perf_counter()
    while n < min_timed:
        for t in texts:
            extract_report(t)
        n += len(texts)
    return states, n / (time.perf_counter() - t0)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", default="frozen", choices=sorted(SPLITS), help="frozen (reported; default) or tuning")
    ap.add_argument("--reports", default=str(REPORTS))
    ap.add_argument("--labels", default=str(LABELS))
    ap.add_argument("--min-timed-rules", type=int, default=20000)
    ap.add_argument("--min-timed-medspacy", type=int, default=500)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core, for both (the child inherits it)
    gold = {s: r for s, r in read_labels(args.labels).items() if r["frozen"] == SPLITS[args.split]}
    ids = sorted(gold)
    reports = read_reports(args.reports)
    missing = [s for s in ids if s not in reports]
    if missing:
        sys.exit(f"{len(missing)} labelled ids are not in {args.reports}, e.g. {missing[0]}")
    rule_states, rule_rate = run_rules([reports[s] for s in ids], args.min_timed_rules)
    ms = run_medspacy(Path(args.reports), ids, args.min_timed_medspacy)
    preds = {"rules": dict(zip(ids, rule_states)), "medspacy": ms["states"]}
    res = {"split": args.split, "n_reports": len(ids), "extractor": EXTRACTOR_VERSION,
           "medspacy_versions": ms["versions"], "n_boot": N_BOOT, "seed": SEED,
           "reports_per_s": {"rules": round(rule_rate, 1), "medspacy": round(ms["reports_per_s"], 1)},
           "by_min_pos": {str(m): bootstrap_f1(gold, preds, m, N_BOOT, SEED) for m in MIN_POS}}
    first = res["by_min_pos"][str(MIN_POS[0])]
    print(f"{args.split} split, {len(ids)} reports; 95% percentile bootstrap intervals ({N_BOOT} resamples, seed {SEED})")
    print(f"{'field':28s} {'n_pos':>5s} {'rules F1 [95% CI]':>22s} {'medspaCy F1 [95% CI]':>22s}")
    for f in FIELDS:
        r, m = first["systems"]["rules"]["fields"][f], first["systems"]["medspacy"]["fields"][f]
        print(f"{f:28s} {first['n_pos'][f]:5d} {r['f1']:6.3f} [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]  "
              f"{m['f1']:6.3f} [{m['ci'][0]:.3f}, {m['ci'][1]:.3f}]")
    for m in MIN_POS:
        t = res["by_min_pos"][str(m)]
        r, s, d = t["systems"]["rules"], t["systems"]["medspacy"], t["differences"]["rules - medspacy"]
        print(f"macro-F1, >= {m:2d} positives ({len(t['scored'])} fields): rules {r['macro_f1']:.3f} "
              f"[{r['macro_f1_ci'][0]:.3f}, {r['macro_f1_ci'][1]:.3f}]  medspaCy {s['macro_f1']:.3f} "
              f"[{s['macro_f1_ci'][0]:.3f}, {s['macro_f1_ci'][1]:.3f}]  difference {d['macro_f1']:+.3f} "
              f"[{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]")
    print(f"reports/s (one core): rules {rule_rate:.1f}, medspaCy {ms['reports_per_s']:.1f}")
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    return res


if __name__ == "__main__":
    main()
