"""Stage ``records``: each source -> data/records/<name>.parquet (+ .rejects.parquet, .json), metrics/records.json.

Outputs are written atomically: data/records is replaced as a whole once every source is done, then the metrics;
a failure or a kill leaves the previous outputs as they were (``vivid_med.records.run``).

params: ``fields`` (the pretraining fields ``target_hash`` covers) and ``records`` (``vivid_med.records.RecordsParams``:
``sources``, name -> ``{kind: <a record-source kind>, root: <folder>, <the kind's options>}``, see
docs/real-data.md; ``llm_extractor``, null or ``{model: smollm2 | <local HF folder>, max_reports: N}``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stages._params import fields, section
from vivid_med.io import write_json
from vivid_med.records import RecordsParams, run
from vivid_med.sources.tablefile import InputFileError
from vivid_med.tables import counts_line

OUT = Path("data/records")
METRICS = Path("metrics/records.json")


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(prog="python -m stages.records", description=__doc__.splitlines()[0]).parse_args(argv)
    params = section(RecordsParams, "records")  # every source's kind and options checked before any data is read
    try:
        metrics = run(params, fields(), OUT)
    except (InputFileError, FileNotFoundError) as e:  # names the file and the cause; the old outputs are intact
        raise SystemExit(f"records: {e}") from None
    for name, counts in metrics.items():
        print(f"records {name}: {counts_line(counts)}")
    write_json(METRICS, metrics, indent=2, sort_keys=True)  # after data/records is swapped in whole


if __name__ == "__main__":
    main()
