"""A medspaCy (1.3.1) ConText labeller with CheXpert's mention lists, run in its own venv (spaCy 3.7, numpy<2).

Usage (from the repo root, after `bash benchmarks/medspacy_labeller/setup.sh`):
    benchmarks/medspacy_labeller/.venv/bin/python benchmarks/medspacy_labeller/run.py REPORTS.csv OUT.json [--ids IDS.txt]

Reads ``study_id,report`` rows, labels each report and writes ``{"states": {study_id: {field: state}},
"reports_per_s": float, "n_timed": int, "versions": {...}}``. It prints no report text.
Mention lists: CheXpert labeler (stanfordmlgroup/chexpert-labeler, MIT), phrases/mention/*.txt and
mention_phrases/{airspace_opacity,pneumothorax,support_devices}.txt, matched as word-initial stems. States:
ConText's defaults (is_negated -> absent, is_uncertain/is_hypothetical -> uncertain), aggregated like CheXpert
(present > uncertain > absent), then the same label conventions as the rule extractor: hierarchy parents and
No Finding derived from the other fields (tests/labels/LABELLING_GUIDE.md).

Kept as it stood for issue #9 (CheXpert's lists, medspaCy's default ConText rules and FIX_RULES below, which
negate "normal" phrasing; without them every "heart size is normal" is cardiomegaly): the comparison baseline.
No phrase or rule is added to it; only parsing bugs are fixed.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import time

import medspacy
import spacy
from loguru import logger
from medspacy.context import ConTextRule
from medspacy.target_matcher import TargetRule

FIELDS = ("no_finding", "enlarged_cardiomediastinum", "cardiomegaly", "lung_opacity", "lung_lesion", "edema",
          "consolidation", "pneumonia", "atelectasis", "pneumothorax", "pleural_effusion", "pleural_other",
          "fracture", "support_devices")
CHEXPERT_MENTIONS = {
    "enlarged_cardiomediastinum": ["mediastinum", "cardiomediastinum", "contour", "mediastinal configuration",
                                   "mediastinal silhouette", "pericardial silhouette", "cardiac silhouette and vascularity"],
    "cardiomegaly": ["cardiomegaly", "the heart", "heart size", "cardiac enlargement", "cardiac size", "cardiac shadow",
                     "cardiac contour", "cardiac silhouette", "enlarged heart"],
    "lung_opacity": ["opaci", "decreased translucency", "increased density", "airspace disease", "air-space disease",
                     "air space disease", "infiltrate", "infiltration", "interstitial marking", "interstitial pattern",
                     "interstitial lung", "reticular pattern", "reticular marking", "reticulation",
                     "parenchymal scarring", "peribronchial thickening", "wall thickening", "scar"],
    "lung_lesion": ["mass", "nodular density", "nodular densities", "nodular opacity", "nodular opacities",
                    "nodular opacification", "nodule", "lump", "cavitary lesion", "carcinoma", "neoplasm", "tumor"],
    "edema": ["edema", "heart failure", "chf", "vascular congestion", "pulmonary congestion", "indistinctness",
              "vascular prominence"],
    "consolidation": ["consolidat"],
    "pneumonia": ["pneumonia", "infection", "infectious process", "infectious"],
    "atelectasis": ["atelecta", "collapse"],
    "pneumothorax": ["pneumothorax", "pneumothoraces"],
    "pleural_effusion": ["pleural fluid", "effusion"],
    "pleural_other": ["pleural thickening", "fibrosis", "fibrothorax", "pleural scar", "pleural parenchymal scar",
                      "pleuro-parenchymal scar", "pleuro-pericardial scar"],
    "fracture": ["fracture"],
    "support_devices": ["pacer", "line", "lines", "picc", "tube", "valve", "catheter", "pacemaker", "hardware",
                        "arthroplast", "marker", "icd", "defib", "device", "drain", "plate", "screw", "cannula",
                        "apparatus", "coil", "support", "equipment", "mediport"],
}
# CheXpert's lists mark word ends with "_" ("_line_", "drain_"): these match the whole word only (a parsing fix:
# "line" used to match "linear" as a stem, which CheXpert's list does not).
WORD_END = {"line", "drain"}
# CheXpert's "unmention" lists: phrases that contain a mention but are not the finding.
CHEXPERT_UNMENTIONS = {"lung_opacity": ["pleural scar"], "pleural_effusion": ["pericardial effusion"],
                       "lung_lesion": ["massive"]}
# One round of fixes on the tuning half (the "0.89 after one round of fixes"): CheXpert's mention lists
# name neutral anchors ("heart size", "mediastinum") that ConText's default rules never negate.
FIX_RULES = [
    ConTextRule("within normal limits", "NEGATED_EXISTENCE", direction="BACKWARD", max_scope=8),
    ConTextRule("normal", "NEGATED_EXISTENCE", direction="BIDIRECTIONAL", max_scope=5),
    ConTextRule("unremarkable", "NEGATED_EXISTENCE", direction="BACKWARD", max_scope=8),
    ConTextRule("not enlarged", "NEGATED_EXISTENCE", direction="BACKWARD", max_scope=5),
    ConTextRule("stable", "NEGATED_EXISTENCE", direction="BACKWARD", max_scope=4,
                pattern=[{"LOWER": {"IN": ["is", "are"]}, "OP": "?"}, {"LOWER": "stable"}, {"IS_PUNCT": True}]),
    ConTextRule("upper limits of normal", "POSSIBLE_EXISTENCE", direction="BIDIRECTIONAL", max_scope=8),
    ConTextRule("top normal", "POSSIBLE_EXISTENCE", direction="BIDIRECTIONAL", max_scope=8),
    ConTextRule("borderline", "POSSIBLE_EXISTENCE", direction="FORWARD", max_scope=4),
    ConTextRule("removed", "NEGATED_EXISTENCE", direction="BACKWARD", max_scope=8),
    ConTextRule("removal of", "NEGATED_EXISTENCE", direction="FORWARD", max_scope=6),
]
PARENTS = {"cardiomegaly": ["enlarged_cardiomediastinum"], "lung_lesion": ["lung_opacity"], "edema": ["lung_opacity"],
           "consolidation": ["lung_opacity"], "pneumonia": ["lung_opacity"], "atelectasis": ["lung_opacity"]}
RANK = {None: 0, "absent": 1, "uncertain": 2, "present": 3}


def build_nlp():
    """medspaCy's default pipeline (PyRuSH sentences, target matcher, ConText) with CheXpert's mentions.

    PyRuSH logs every token at DEBUG through loguru (report text, and most of its run time): silenced here.
    """
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    nlp = medspacy.load()
    matcher = nlp.get_pipe("medspacy_target_matcher")
    rules = [TargetRule(p, field, pattern=r"(?i)\b" + re.escape(p) + (r"\b" if p in WORD_END else r"[\w-]*"))
             for field, phrases in CHEXPERT_MENTIONS.items() for p in phrases]
    rules += [TargetRule(p, "_unmention", pattern=r"(?i)\b" + re.escape(p) + r"[\w-]*")
              for ps in CHEXPERT_UNMENTIONS.values() for p in ps]
    matcher.add(rules)
    nlp.get_pipe("medspacy_context").add(FIX_RULES)
    return nlp


def label(doc) -> dict[str, str | None]:
    states: dict[str, str | None] = {f: None for f in FIELDS}
    for ent in doc.ents:
        f = ent.label_
        if f not in states:
            continue
        if ent._.is_negated:
            st = "absent"
        elif ent._.is_uncertain or ent._.is_hypothetical:
            st = "uncertain"
        else:
            st = "present"
        if RANK[st] > RANK[states[f]]:
            states[f] = st
    for child, parents in PARENTS.items():
        for p in parents:
            if states[child] in ("present", "uncertain") and RANK[states[child]] > RANK[states[p]]:
                states[p] = states[child]
    pos = any(states[f] in ("present", "uncertain") for f in FIELDS if f not in ("no_finding", "support_devices"))
    states["no_finding"] = "absent" if pos else "present"
    return states


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports")
    ap.add_argument("out")
    ap.add_argument("--ids", help="file with one study_id per line (default: all rows)")
    ap.add_argument("--min-timed", type=int, default=0, help="repeat the timed pass until this many reports")
    args = ap.parse_args(argv)
    with open(args.reports, newline="") as f:
        reports = {r["study_id"]: r["report"] for r in csv.DictReader(f)}
    if args.ids:
        ids = [s.strip() for s in open(args.ids) if s.strip()]
        missing = [s for s in ids if s not in reports]
        if missing:
            sys.exit(f"{args.ids}: {len(missing)} study ids not in {args.reports}, e.g. {missing[0]}")
    else:
        ids = list(reports)
    nlp = build_nlp()
    texts = [reports[s] for s in ids]
    states = {s: label(d) for s, d in zip(ids, nlp.pipe(texts))}
    n, t0 = 0, time.perf_counter()
    while True:
        for _ in nlp.pipe(texts):
            n += 1
        if n >= args.min_timed:
            break
    rate = n / (time.perf_counter() - t0)
    json.dump({"states": states, "reports_per_s": rate, "n_timed": n,
               "versions": {"medspacy": medspacy.__version__, "spacy": spacy.__version__}}, open(args.out, "w"))
    print(f"medspacy labeller: {len(ids)} reports, {rate:.1f} reports/s over {n}")


if __name__ == "__main__":
    main()
