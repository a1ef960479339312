"""Side by side on the FROZEN half of the labelled IU reports: the rule extractor vs a medspaCy ConText labeller.

The medspaCy labeller (benchmarks/medspacy_labeller/run.py, CheXpert's mention lists) runs as a subprocess in
its own venv (medspaCy 1.3.1 pins spaCy 3.7 -> numpy < 2, which conflicts with this project's stack); create it
with `bash benchmarks/medspacy_labeller/setup.sh`. Prints per-field F1, macro-F1 and reports/s of both; no
report text. Usage: python benchmarks/extract_compare.py [--half 1] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vivid_med.extract import EXTRACTOR_VERSION, extract_report
from vivid_med.extract.scoring import f1_table, read_labels, read_reports
from vivid_med.fields import FIELDS

REPO = Path(__file__).resolve().parents[1]
REPORTS = REPO.parent / "shared" / "data" / "iu_xray_reports_dev" / "reports.csv"
LABELS = REPO / "tests" / "labels" / "iu_dev_labels.csv"
MEDSPACY = REPO / "benchmarks" / "medspacy_labeller"
MIN_POS = (15, 3, 1)


def run_medspacy(ids: list[str], min_timed: int) -> dict:
    """States and reports/s from the medspaCy labeller subprocess (SystemExit with the fix if its venv is missing)."""
    py = MEDSPACY / ".venv" / "bin" / "python"
    if not py.exists():
        sys.exit(f"{py} missing: run `bash {MEDSPACY / 'setup.sh'}` first")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "ids.txt").write_text("\n".join(ids))
        out = Path(tmp) / "out.json"
        subprocess.run([str(py), str(MEDSPACY / "run.py"), str(REPORTS), str(out), "--ids", str(Path(tmp) / "ids.txt"),
                        "--min-timed", str(min_timed)], check=True, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
        return json.loads(out.read_text())


def run_rules(texts: list[str], min_timed: int) -> tuple[list[dict], float]:
    states = [extract_report(t).states for t in texts]
    n, t0 = 0, time.perf_counter()
    while n < min_timed:
        for t in texts:
            extract_report(t)
        n += len(texts)
    return states, n / (time.perf_counter() - t0)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--half", default="1", choices=["0", "1"], help="1: frozen half (reported), 0: tuning half")
    ap.add_argument("--min-timed-rules", type=int, default=20000)
    ap.add_argument("--min-timed-medspacy", type=int, default=500)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    reports = read_reports(REPORTS)
    gold = {s: r for s, r in read_labels(LABELS).items() if r["frozen"] == args.half}
    ids = list(gold)
    rule_states, rule_rate = run_rules([reports[s] for s in ids], args.min_timed_rules)
    ms = run_medspacy(ids, args.min_timed_medspacy)
    res = {"half": "frozen" if args.half == "1" else "tuning", "n_reports": len(ids), "extractor": EXTRACTOR_VERSION,
           "medspacy_versions": ms["versions"],
           "rule_extractor": {"reports_per_s": round(rule_rate, 1)}, "medspacy": {"reports_per_s": round(ms["reports_per_s"], 1)}}
    for name, pred in (("rule_extractor", dict(zip(ids, rule_states))), ("medspacy", ms["states"])):
        for m in MIN_POS:
            t = f1_table(gold, pred, m)
            res[name][f"macro_f1_min{m}"] = t["macro_f1"]
        res[name]["f1"] = {f: v["f1"] for f, v in t["fields"].items()}
        res[name]["n_pos"] = {f: v["n_pos"] for f, v in t["fields"].items()}
    print(f"{res['half']} half, {len(ids)} reports")
    print(f"{'field':28s} {'n_pos':>5s} {'rules':>6s} {'medspaCy':>8s}")
    for f in FIELDS:
        print(f"{f:28s} {res['rule_extractor']['n_pos'][f]:5d} {res['rule_extractor']['f1'][f]:6.3f} {res['medspacy']['f1'][f]:8.3f}")
    for m in MIN_POS:
        print(f"macro-F1 (fields with >= {m:2d} positives) {res['rule_extractor'][f'macro_f1_min{m}']:6.3f} "
              f"{res['medspacy'][f'macro_f1_min{m}']:8.3f}")
    print(f"reports/s (one process)            {rule_rate:8.1f} {ms['reports_per_s']:8.1f}")
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    return res


if __name__ == "__main__":
    main()
