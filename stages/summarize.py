"""Stage summarize: the comparison table and the plots of the backbones in ``pretrain.train_runs``.

Reads metrics/eval/detail/<run>.json for each run of ``pretrain.train_runs`` (not whatever lies in metrics/eval/: a
run dropped from train_runs leaves its old files behind) and the plot data in data/features/<run>/plots;
writes metrics/plots/ (CSV for ``dvc plots``, PNG), metrics/summary.md and, last, metrics/summary.json (the DVC
metric). metrics/plots/ is built aside and swapped in whole; the summary files are each written whole or not at all.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stages._params import train_runs
from vivid_med.evaluate.metrics import rounded
from vivid_med.evaluate.plots import write_plots
from vivid_med.evaluate.summary import build_summary
from vivid_med.io import atomic_dir, write_json, write_text

EVAL_DIR, FEATURES, PLOTS = Path("metrics/eval"), Path("data/features"), Path("metrics/plots")


def read_details(runs: list[str]) -> dict[str, dict]:
    """{run: its detail} for each of ``runs``; SystemExit when a detail is missing."""
    missing = [r for r in runs if not (EVAL_DIR / "detail" / f"{r}.json").is_file()]
    if missing:
        raise SystemExit(f"summarize: no {EVAL_DIR}/detail/<run>.json for {missing} (rerun evaluate@<run>)")
    return {r: json.loads((EVAL_DIR / "detail" / f"{r}.json").read_text()) for r in runs}


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    details = read_details(train_runs())
    md, summary = build_summary(details)
    with atomic_dir(PLOTS) as tmp:
        write_plots(details, FEATURES, tmp)
    write_text("metrics/summary.md", md)
    write_json("metrics/summary.json", rounded(summary), indent=1, sort_keys=True)
    print(md)


if __name__ == "__main__":
    main()
