"""Stage `records`: each source dataset -> data/records/<name>.parquet (+ .rejects.parquet, .json), metrics/records.json.

params (section ``records``): ``fields`` (the pretraining fields ``target_hash`` covers), ``sources``
(``name: {kind: chexpert|mimic|nih|openi, root: <folder>, labels: table|reports, check_images: true, ...}``,
other keys go to the adapter), ``llm_extractor`` (null, or ``{model: smollm2 | <local HF folder>,
max_reports: N}``: the LLM proposes states for the first N distinct reports; verified claims override the rules).
"""

from __future__ import annotations

import json
from pathlib import Path

from stages._params import load_section
from vivid_med.sources.base import is_synthetic
from vivid_med.fields import check_fields
from vivid_med.records import build_records, load_source, summary
from vivid_med.reports import TextExtractor
from vivid_med.tables import counts_line, write_records, write_rejects
from vivid_med.ums import SCHEMA_VERSION

OUT = Path("data/records")
METRICS = Path("metrics/records.json")


def main() -> None:
    params = load_section("records")
    fields = check_fields(params["fields"], "records.fields")
    extractor = TextExtractor()
    if params.get("llm_extractor"):
        from vivid_med.extract.llm import load_proposer

        llm = params["llm_extractor"]
        extractor = TextExtractor(load_proposer(llm["model"]), Path(llm["model"]).name, llm.get("max_reports"))
    metrics = {}
    for name, spec in params["sources"].items():
        spec = dict(spec)
        kind, root = spec.pop("kind"), spec.pop("root")
        check_images = spec.pop("check_images", True)
        src, labels = load_source(kind, root, spec.pop("labels", None), **spec)
        records, rejects = build_records(src, name, labels, fields, check_images, extractor)
        write_records(records, OUT / f"{name}.parquet", fields)
        write_rejects(rejects, OUT / f"{name}.rejects.parquet")
        counts = summary(records, rejects)
        counts["synthetic"] = is_synthetic(root)
        info = {"dataset": name, "kind": kind, "root": str(root), "labels": labels, "schema_version": SCHEMA_VERSION,
                "target_fields": list(fields), **counts}
        (OUT / f"{name}.json").write_text(json.dumps(info, indent=2) + "\n")
        metrics[name] = counts
        print(f"records {name}: {counts_line(counts)}")
    METRICS.parent.mkdir(parents=True, exist_ok=True)
    METRICS.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
