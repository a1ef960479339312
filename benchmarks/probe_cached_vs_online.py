"""Cached-feature probing vs training the head through the frozen ViT at every step (the paper's way).

Same data, same head, same optimiser, same number of epochs; prints the wall-clock ratio and the test-AUC
difference. Data: the real NIH 1000-image subset (../shared/data). Usage:

    OMP_NUM_THREADS=2 python benchmarks/probe_cached_vs_online.py [--backbone models/vivid] [--epochs 20]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from vivid_med.evaluate.features import extract, input_spec, prepare
from vivid_med.evaluate.metrics import masked_auc
from vivid_med.evaluate.probes import LinearProbe, probe_loss
from vivid_med.sources.nih_png import NihPngSubset

REPO = Path(__file__).resolve().parents[1]


def train_head(n: int, features_of, y: torch.Tensor, mean: np.ndarray, std: np.ndarray, epochs: int,
               batch_size: int, seed: int) -> LinearProbe:
    """Masked-BCE linear head; ``features_of(idx) -> [B, D]`` supplies each mini-batch's features."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    probe = LinearProbe(mean, std, y.shape[1], multilabel=True)
    opt = torch.optim.AdamW(probe.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in range(epochs):
        for idx in torch.randperm(n, generator=gen).split(batch_size):
            loss = probe_loss(probe(features_of(idx)), y[idx], True)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return probe.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared/data/nih_cxr14_1000_64px")
    ap.add_argument("--backbone", type=Path, default=None, help="models/<run> (default: random-init ViT-Tiny)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="write the numbers as JSON here")
    args = ap.parse_args()

    from vivid_med.student.backbone import BackboneConfig, create_backbone
    from vivid_med.student.export import load_backbone

    torch.manual_seed(args.seed)
    model = load_backbone(args.backbone) if args.backbone else create_backbone(BackboneConfig()).eval()
    s = NihPngSubset.at(args.data).image_set()
    tr, te = s.splits == "train", s.splits == "test"
    y = torch.as_tensor(s.labels[tr])
    size, chans = input_spec(model)

    t0 = time.perf_counter()
    x_tr, x_te = extract(model, s.images[tr]), extract(model, s.images[te])
    cached = train_head(int(tr.sum()), lambda i: torch.as_tensor(x_tr[i.numpy()]), y, x_tr.mean(0), x_tr.std(0) + 1e-6,
                        args.epochs, args.batch_size, args.seed)
    t_cached = time.perf_counter() - t0

    images = s.images[tr]

    def online_features(idx: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model.forward_head(model.forward_features(prepare(images[idx.numpy()], size, chans)), pre_logits=True)

    t0 = time.perf_counter()
    online = train_head(int(tr.sum()), online_features, y, x_tr.mean(0), x_tr.std(0) + 1e-6,
                        args.epochs, args.batch_size, args.seed)
    x_te_online = extract(model, s.images[te])
    t_online = time.perf_counter() - t0

    auc_c = masked_auc(s.labels[te], cached.predict(x_te), s.class_names)
    auc_o = masked_auc(s.labels[te], online.predict(x_te_online), s.class_names)
    out = {"data": s.name, "backbone": str(args.backbone or "random_init"), "epochs": args.epochs,
           "train_images": int(tr.sum()), "test_images": int(te.sum()), "threads": torch.get_num_threads(),
           "seconds_cached": round(t_cached, 2), "seconds_online": round(t_online, 2),
           "time_ratio_online_over_cached": round(t_online / t_cached, 2),
           "auc_cached": round(auc_c["macro"], 4), "auc_online": round(auc_o["macro"], 4),
           "auc_difference": round(auc_o["macro"] - auc_c["macro"], 4), "auc_n_fields": auc_c["n_fields"]}
    print(json.dumps(out, indent=1))
    if args.out:
        args.out.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
