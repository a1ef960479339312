"""Stage ``evaluate@<run>``: linear probes and transfer on the frozen backbone models/<run>/ (``evaluate:`` params).

Writes metrics/eval/<run>.json (small, git-tracked); cached features and plot data go to data/features/<run>/.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stages._params import fields, section
from vivid_med.evaluate import EvaluateParams, run

METRICS = Path("metrics/eval")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a trained run (models/<run>/)")
    args = ap.parse_args(argv)
    params, pretrain_fields = section(EvaluateParams, "evaluate"), fields()
    out = run(Path("models") / args.run, params, pretrain_fields, Path("data/features") / args.run)
    METRICS.mkdir(parents=True, exist_ok=True)
    path = METRICS / f"{args.run}.json"
    path.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"evaluate {args.run}: CheXpert-12 AUC {out['chexpert_paper']['auc']['mean']}, "
          f"NIH-8 AUC {out['nih8']['auc']['mean']} -> {path}")


if __name__ == "__main__":
    main()
