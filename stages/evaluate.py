"""Stage ``evaluate@<run>``: linear probes and transfer on the frozen backbone models/<run>/ (``evaluate:`` params).

Writes metrics/eval/detail/<run>.json (every number: per seed, per field, the data behind each protocol; not a DVC
metric) and, last, metrics/eval/<run>.json (the headline numbers: the DVC metric). Both small and git-tracked; each
file is written whole or not at all. Cached features and plot data go to data/features/<run>/.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stages._params import fields, runtime, section
from vivid_med.evaluate.suite import EvaluateParams, headline, run
from vivid_med.io import failpoint, write_json
from vivid_med.runtime import EvaluateRuntime

METRICS = Path("metrics/eval")
DETAIL = METRICS / "detail"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="a trained run (models/<run>/)")
    args = ap.parse_args(argv)
    params, pretrain_fields = section(EvaluateParams, "evaluate"), fields()
    detail = run(Path("models") / args.run, params, pretrain_fields, Path("data/features") / args.run,
                 runtime(EvaluateRuntime, "evaluate"))
    write_json(DETAIL / f"{args.run}.json", detail, indent=1, sort_keys=True)
    failpoint("evaluate:metrics")
    path = write_json(METRICS / f"{args.run}.json", headline(detail), indent=1, sort_keys=True)
    print(f"evaluate {args.run}: CheXpert-12 AUC {detail['chexpert_paper']['auc']['mean']}, "
          f"NIH-8 AUC {detail['nih8']['auc']['mean']} -> {path}")


if __name__ == "__main__":
    main()
