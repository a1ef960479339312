"""benchmarks/gpu_check.py --tiny on the CPU: every measurement runs on the real code and its JSON is sane."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
OBJECTIVES = ("bce", "vivid", "vivid_online[smollm2-135m]", "vivid_online[qwen2.5-1.5b]")
MEASURED = ("data/build_store", "data/workers=1", "data/workers=2", "teacher/full_depth", "teacher/layer=2",
            "features", *(f"train/{o}/eager" for o in OBJECTIVES))


def check(tmp_path: Path, *args: str) -> tuple[dict, str]:
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--out", str(out), *args], text=True,
                          capture_output=True, timeout=1200, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


def test_tiny_check_measures_every_path_and_extrapolates_each_objective(tmp_path):
    run, printed = check(tmp_path)
    assert run["mode"] == "tiny" and not run["errors"], run["errors"]
    results, skipped = run["results"], {s["what"] for s in run["skipped"]}
    assert set(MEASURED) <= results.keys(), f"missing: {set(MEASURED) - results.keys()}; skipped: {skipped}"
    for key, r in results.items():
        rates = {k: v for k, v in r.items() if k.endswith("_per_s") or k.startswith("targets_per_s")}
        assert rates and all(v > 0 for v in rates.values()), (key, r)
        assert r["wall_s"] >= 0 and "loadavg" in r
    for o in OBJECTIVES:
        assert results[f"train/{o}/eager"]["step_s"] > 0
        assert f"train/{o}/compiled" in results.keys() | skipped  # compiled: measured, or skipped by the budget
        assert run["extrapolation"][o]["eager_h"] > 0
    assert run["extrapolation"]["vivid"]["teacher_cache_h"] > 0
    online = results["train/vivid_online[qwen2.5-1.5b]/eager"]
    assert online["sequence_tokens"] > 8 + 16 + 1  # SPD tokens + ViT tokens (32 px, patch 8) + the target's
    assert "10k x 32" in printed and "loader/step" in printed


def test_a_spent_budget_skips_every_measurement_and_says_why(tmp_path):
    run, printed = check(tmp_path, "--budget-s", "0")
    assert not run["results"] and not run["errors"]
    skipped = {s["what"]: s["why"] for s in run["skipped"]}
    assert set(MEASURED) <= skipped.keys() and all(skipped.values())
    assert skipped["train/bce/compiled"] == "train/bce/eager has no result"
    assert "skipped: data/build_store" in printed
