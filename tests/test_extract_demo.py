"""The rule extractor on the synthetic demo cohort's hard-wrapped MIMIC-style reports, against its label CSV.

The demo's labels say exactly what its text says (``vivid_med.demo.reports``), so disagreement is an extractor
error or one of two documented convention differences, both left out of the agreement: No Finding (the demo leaves
it blank where the extractor writes absent) and parent fields made positive only by hierarchy propagation. A third
difference stays in and is why Cardiomegaly has its own floor: "the cardiomediastinal silhouette is normal" is
cardiomegaly absent for the extractor (LABELLING_GUIDE.md) and blank for the demo.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import section

from vivid_med.demo import DemoConfig, build_demo
from vivid_med.extract import extract_report, verify
from vivid_med.extract.scoring import read_chexpert_labels, state_agreement

#: params.yaml's demo section, smaller (everything else as in params.yaml, where the values live).
SMALL = section("demo", seed=0, mimic={"n_patients": 60, "studies_per_patient": [1, 3], "image_size": 16},
                nih={"n_patients": 4, "image_size": 16}, lidc={"n_patients": 1, "slices": 8, "matrix": 32},
                organ={"n_per_class": 4, "image_size": 16, "n_nifti_cases": 1})
# Measured on this cohort (122 reports): 0.9921 over all slots, 0.9787 over mentioned slots, cardiomegaly 0.838,
# every other field 1.0; on the 2,013-report default demo 0.9946 / 0.9841 (0.9359 / 0.8115 before line breaks
# inside sentences were read as whitespace). Floors sit a little under the measured values.
MIN_ALL, MIN_MENTIONED, MIN_FIELD, MIN_CARDIOMEGALY = 0.985, 0.97, 0.98, 0.8


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> tuple[dict, dict, dict]:
    """(gold labels, report texts, extraction results), keyed by study id."""
    root = tmp_path_factory.mktemp("demo") / "demo"
    build_demo(root, DemoConfig.model_validate(SMALL))
    gold = read_chexpert_labels(root / "mimic" / "mimic-cxr-2.0.0-chexpert.csv")
    texts = {p.stem[1:]: p.read_text() for p in (root / "mimic" / "files").glob("p*/p*/s*.txt")}
    assert set(gold) == set(texts) and len(gold) >= 100
    return gold, texts, {s: extract_report(t) for s, t in texts.items()}


def test_reports_are_hard_wrapped(cohort):
    _, texts, _ = cohort
    wrapped = sum(any(line.rstrip() and not line.rstrip().endswith((".", ":")) for line in t.splitlines()[1:])
                  for t in texts.values())
    assert wrapped > 0.3 * len(texts)  # the case this test exists for: sentences running over line breaks


def test_agreement_with_the_demo_labels(cohort):
    gold, _, results = cohort
    a = state_agreement(gold, results)
    fields = {f: round(v["agreement"], 3) for f, v in a["fields"].items()}
    assert a["agreement"] >= MIN_ALL and a["agreement_mentioned"] >= MIN_MENTIONED, (a["agreement"], fields)
    assert fields.pop("cardiomegaly") >= MIN_CARDIOMEGALY
    assert min(fields.values()) >= MIN_FIELD, fields
    assert 0 < a["n_hierarchy_skipped"] < 0.05 * a["n_slots"]


def test_positive_findings_match(cohort):
    """Present-or-uncertain (how the extractor is judged) matches the labels on every field but Cardiomegaly's
    documented convention, which only ever turns blank into absent (never a positive)."""
    gold, _, results = cohort
    pos = ("present", "uncertain")
    wrong = [(s, f) for s, g in gold.items() for f, st in g.items() if f != "no_finding"
             and (st in pos) != (results[s].states[f] in pos)
             and not results[s].provenance.get(f, "").startswith("from ")]
    assert not wrong, wrong[:5]


def test_verifier_finds_no_problem(cohort):
    _, texts, results = cohort
    bad = {s: p for s, r in results.items() if (p := verify(texts[s], r))}
    assert not bad, next(iter(bad.items()))
