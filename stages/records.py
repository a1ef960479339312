"""Stage ``records``: each source -> data/records/<name>.parquet (+ .rejects.parquet, .json), metrics/records.json.

params: ``fields`` (the pretraining fields ``target_hash`` covers) and ``records`` (``vivid_med.records.RecordsParams``:
``sources``, name -> ``{kind: <a record-source kind>, root: <folder>, <the kind's options>}``, see
docs/real-data.md; ``llm_extractor``, null or ``{model: smollm2 | <local HF folder>, max_reports: N}``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stages._params import fields, section
from vivid_med.records import RecordsParams, run
from vivid_med.tables import counts_line

OUT = Path("data/records")
METRICS = Path("metrics/records.json")


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(prog="python -m stages.records", description=__doc__.splitlines()[0]).parse_args(argv)
    params = section(RecordsParams, "records")  # every source's kind and options checked before any data is read
    metrics = run(params, fields(), OUT)
    for name, counts in metrics.items():
        print(f"records {name}: {counts_line(counts)}")
    METRICS.parent.mkdir(parents=True, exist_ok=True)
    METRICS.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
