"""Semantic check of the teacher's prototypes: related vs unrelated finding pairs, fixed in advance.

    python benchmarks/teacher_semantics.py [--folder models/teacher/smollm2] [--layers 1 2 4 6 8]
        [--poolings name_state all_tokens last_token] [--templates chat] [--random-seeds 0 1 2 3 4 5 6 7]
        [--out /tmp/teacher_semantics.json]

For each variant (pretrained, random), template, pooling and layer: the 36 (field, state) prototypes,
centred over the set, a field's vector is its mean over states; margin = mean cosine of the related pairs
minus that of the unrelated pairs (vivid_med.teacher.embed.RELATED / UNRELATED). The model is run once
per variant to the deepest layer asked for; every layer is pooled from that run. The random variant is
drawn with several seeds: with 5 + 5 pairs one draw alone is noisy (std about 0.05), so its mean and std
are reported. Note: a random model built to a different depth is a different draw.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from vivid_med.fields import DISPLAY_NAMES, PRETRAIN_FIELDS, STATES
from vivid_med.teacher.embed import Embedder, prototype_text, semantic_margin
from vivid_med.teacher.load import load_teacher


def prototypes_all_layers(emb: Embedder, layers: list[int]) -> dict[int, torch.Tensor]:
    """layer -> centred prototypes [F,S,D], from one run to max(layers)."""
    pairs = [(f, s) for f in emb.fields for s in STATES]
    enc = emb.encode([prototype_text(f, s) for f, s in pairs], [[DISPLAY_NAMES[f]] for f, _ in pairs])
    pooled = []
    for ids, w in enc:
        with torch.no_grad():
            hs = emb.teacher.model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
        pooled.append(torch.stack([torch.tensor(w) @ hs[k][0].float() for k in layers]))
    p = torch.stack(pooled, 1).view(len(layers), len(emb.fields), len(STATES), -1)
    return {k: p[i] - p[i].reshape(-1, p.shape[-1]).mean(0) for i, k in enumerate(layers)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--folder", default="models/teacher/smollm2")
    ap.add_argument("--layers", type=int, nargs="+", default=[1, 2, 4, 6, 8])
    ap.add_argument("--poolings", nargs="+", default=["name_state", "all_tokens", "last_token"])
    ap.add_argument("--templates", nargs="+", default=["chat"])
    ap.add_argument("--random-seeds", type=int, nargs="+", default=list(range(8)))
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    rows = []
    runs = [("pretrained", 0)] + [("random", seed) for seed in args.random_seeds]
    for variant, seed in runs:
        teacher = load_teacher(args.folder, variant, layer=max(args.layers), seed=seed)
        for template in args.templates:
            for pooling in args.poolings:
                emb = Embedder(teacher, pooling, template, PRETRAIN_FIELDS)
                for layer, protos in prototypes_all_layers(emb, args.layers).items():
                    m = semantic_margin(protos, PRETRAIN_FIELDS)
                    # how distinct a field's states are: mean cosine between its states' prototypes
                    u = torch.nn.functional.normalize(protos, dim=-1)
                    within = torch.einsum("fsd,ftd->fst", u, u)[:, ~torch.eye(len(STATES), dtype=torch.bool)].mean()
                    rows.append({"variant": variant, "seed": seed, "template": template, "pooling": pooling,
                                 "layer": layer, "related": round(m["related"], 4),
                                 "unrelated": round(m["unrelated"], 4), "margin": round(m["margin"], 4),
                                 "state_cos": round(float(within), 3)})
                    print(json.dumps(rows[-1]), flush=True)
    print("\n| variant | template | pooling | " + " | ".join(f"layer {k}" for k in args.layers) + " |")
    print("|---|---|---|" + "---|" * len(args.layers))
    for v in ("pretrained", "random"):
        for t in args.templates:
            for p in args.poolings:
                cells = []
                for k in args.layers:
                    ms = [r["margin"] for r in rows if (r["variant"], r["template"], r["pooling"], r["layer"]) == (v, t, p, k)]
                    sd = f" +- {statistics.stdev(ms):.3f}" if len(ms) > 1 else ""
                    cells.append(f"{statistics.mean(ms):+.3f}{sd}")
                print(f"| {v} | {t} | {p} | " + " | ".join(cells) + " |")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
