"""Step time of the pretraining objectives at the default params, on the same batches, in one process.

    OMP_NUM_THREADS=2 python benchmarks/pretrain_step.py [--steps 20] [--online]

Runs the real training loop (``vivid_med.train.train``) on synthetic images and states for vivid and bce
(same seed, same batches, same augmentations), takes the median time per optimizer step after warm-up,
reports data loading as a share of the step and, with ``--online``, vivid_online's per-step cost with the
default teacher (models/teacher/<name>, needs the teacher stage). Last line:
``step_time_ratio vivid/bce = X`` (goal X <= 1.15).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from stages._params import load_section  # noqa: E402
from vivid_med.data import PretrainDataset, augmentation  # noqa: E402
from vivid_med.objectives import build_objective, load_online_teacher  # noqa: E402
from vivid_med.student import BackboneConfig, create_backbone  # noqa: E402
from vivid_med.train import Student, TrainConfig, train  # noqa: E402

TEACHER_DIM = 576  # SmolLM2-135M width: the cached teacher's embedding size


def run(name: str, cfg: dict, n_fields: int, dataset: PretrainDataset, steps: int, warmup: int,
        extra: dict | None = None) -> dict:
    """Median seconds per optimizer step of run ``name`` and its data-loading share."""
    bcfg = BackboneConfig(cfg["model"], cfg["img_size"], cfg["patch_size"], cfg["in_chans"], False,
                          cfg.get("kwargs") or {})
    tcfg = TrainConfig(**{k: v for k, v in cfg.items() if k in TrainConfig.__dataclass_fields__ and k != "steps"},
                       steps=steps)
    tcfg = TrainConfig(**{**tcfg.__dict__, "checkpoint_every": 10**9})
    torch.manual_seed(tcfg.seed)
    backbone = create_backbone(bcfg)
    objective = build_objective(cfg["objective"], backbone.num_features, n_fields, cfg, **(extra or {}))
    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        summary = train(Student(backbone, objective), dataset, tcfg, Path(tmp), None, fingerprint=name,
                        callback=lambda step, terms: stamps.append(time.perf_counter()))
    step_s = statistics.median(np.diff(stamps[warmup:]))
    return {"name": name, "step_s": step_s, "images_per_s": tcfg.batch_size / step_s,
            "data_share": summary["data_share"], "loss": summary["final"]["loss"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--online", action="store_true", help="also time vivid_online with the default teacher")
    ap.add_argument("--online-steps", type=int, default=2, help="timed vivid_online steps (after 1 warm-up)")
    args = ap.parse_args()
    section = load_section("pretrain")
    fields = section["fields"]
    common = section["common"]
    n = max(common["batch_size"] * 4, 256)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (n, common["img_size"], common["img_size"]), dtype=np.uint8)
    states = rng.integers(-1, 3, (n, len(fields)))
    target_rows = rng.integers(0, 64, n)
    dataset = PretrainDataset([pixels], np.zeros(n, int), np.arange(n), states, target_rows,
                              transform=augmentation(common["img_size"], **(common.get("augment") or {})))
    g = torch.Generator().manual_seed(0)
    teacher = {"prototypes": torch.randn(len(fields), 3, TEACHER_DIM, generator=g),
               "targets": torch.randn(64, TEACHER_DIM, generator=g)}
    results = []
    for name in ("bce", "vivid", "bce", "vivid"):  # interleaved: a shared CPU drifts
        cfg = {**common, **section["runs"][name]}
        results.append(run(name, cfg, len(fields), dataset, args.warmup + args.steps, args.warmup,
                           teacher if cfg["objective"] == "vivid" else None))
        r = results[-1]
        print(f"{name:>16}: {r['step_s'] * 1000:7.1f} ms/step  {r['images_per_s']:6.1f} img/s  "
              f"data {100 * r['data_share']:.1f}% of the step", flush=True)
    if args.online:
        print(online_cost(section, dataset, args))
    best = {k: min(r["step_s"] for r in results if r["name"] == k) for k in ("vivid", "bce")}
    print(f"threads {torch.get_num_threads()}, batch {common['batch_size']}, {common['model']} "
          f"{common['img_size']}px/{common['patch_size']} {common.get('kwargs') or ''}")
    print(f"step_time_ratio vivid/bce = {best['vivid'] / best['bce']:.3f}")


def online_cost(section: dict, dataset: PretrainDataset, args: argparse.Namespace) -> str:
    """vivid_online's per-step time with the default teacher, or why it could not run."""
    cfg = {**section["common"], **section["runs"]["vivid_online"]}
    if not Path(cfg["teacher_dir"]).exists():
        return f"vivid_online: skipped ({cfg['teacher_dir']} missing: run `dvc repro teacher_weights`)"
    try:
        teacher, width = load_online_teacher(cfg["teacher_dir"], cfg["teacher"], cfg.get("online") or {})
    except ImportError as e:
        return f"vivid_online: skipped ({e})"
    from vivid_med.fields import PRETRAIN_FIELDS
    from vivid_med.ums import cxr_record, provenance, target_text

    rng = np.random.default_rng(0)  # full-length targets: random states over the pretraining fields
    texts = [target_text(cxr_record({f: rng.choice([None, "present", "absent", "uncertain"]) for f in PRETRAIN_FIELDS},
                                    "PA", provenance())) for _ in range(len(dataset))]
    online = PretrainDataset(dataset.pixels, dataset.store, dataset.rows, dataset.states.numpy(), None, texts,
                             dataset.transform)
    r = run("vivid_online", cfg, len(section["fields"]), online, 1 + args.online_steps, 1,
            {"teacher": teacher, "lm_width": width})
    return (f"    vivid_online: {r['step_s'] * 1000:7.1f} ms/step  {r['images_per_s']:6.1f} img/s  "
            f"(teacher {cfg['teacher_dir']}, width {width})")


if __name__ == "__main__":
    main()
