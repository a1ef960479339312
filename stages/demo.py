"""Stage ``demo``: build the SYNTHETIC demo cohort in data/demo/ and write metrics/demo.json.

params: ``demo`` (``vivid_med.demo.DemoConfig``: seed, mimic, nih, lidc, organ, prevalence).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stages._params import section
from vivid_med.demo import DemoConfig, build_demo
from vivid_med.io import atomic_dir, write_json

OUT = Path("data/demo")
METRICS = Path("metrics/demo.json")


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(prog="python -m stages.demo", description=__doc__.splitlines()[0]).parse_args(argv)
    config = section(DemoConfig, "demo")  # validates before any work
    with atomic_dir(OUT) as tmp:  # the previous data/demo stays until the new one is complete
        counts = build_demo(tmp, config)
    write_json(METRICS, counts, indent=2, sort_keys=True)
    print(f"demo: {counts['mimic']['n_studies']} mimic studies, {counts['nih']['n_images']} nih images -> {OUT}")


if __name__ == "__main__":
    main()
