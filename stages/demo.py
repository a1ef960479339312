"""Stage ``demo``: build the SYNTHETIC demo cohort in data/demo/ and write metrics/demo.json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from stages._params import load_section
from vivid_med.demo import DemoConfig, build_demo

OUT = Path("data/demo")
METRICS = Path("metrics/demo.json")


def main() -> None:
    config = DemoConfig.from_section(load_section("demo"))  # validates before any work
    if OUT.exists():
        shutil.rmtree(OUT)
    counts = build_demo(OUT, config)
    METRICS.parent.mkdir(parents=True, exist_ok=True)
    METRICS.write_text(json.dumps(counts, indent=2, sort_keys=True) + "\n")
    print(f"demo: {counts['mimic']['n_studies']} mimic studies, {counts['nih']['n_images']} nih images -> {OUT}")


if __name__ == "__main__":
    main()
