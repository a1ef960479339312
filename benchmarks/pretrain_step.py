"""Step time of the pretraining objectives at the default params, on the same batches, in one process.

    OMP_NUM_THREADS=2 python benchmarks/pretrain_step.py [--steps 20] [--online]

Runs the real training loop (``vivid_med.train.train``) on synthetic images and states for vivid and bce (same seed,
same batches, same augmentations; interleaved, since a shared CPU drifts), takes the median time per optimizer step
after warm-up and data loading's share of the step; with ``--online``, vivid_online's per-step cost with the default
teacher (models/teacher/<name>: run `dvc repro teacher_weights` first). Last line: ``step_time_ratio vivid/bce = X``.
For GPU rates at the paper's size see benchmarks/gpu_check.py.
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
from stages._params import fields, section  # noqa: E402
from vivid_med.data import PretrainDataset, augmentation  # noqa: E402
from vivid_med.objectives import OBJECTIVES, Resources  # noqa: E402
from vivid_med.pretrain import PretrainParams, RunConfig  # noqa: E402
from vivid_med.runtime import PretrainRuntime  # noqa: E402
from vivid_med.states import NULL_CODE, STATE_VALUES  # noqa: E402
from vivid_med.student import create_backbone  # noqa: E402
from vivid_med.teacher.cache import TeacherCache  # noqa: E402
from vivid_med.train import Student, train  # noqa: E402

TEACHER_DIM = 576  # SmolLM2-135M width: the cached teacher's embedding size


def run(cfg: RunConfig, resources: Resources, dataset: PretrainDataset, steps: int, warmup: int) -> dict:
    """Median seconds per optimizer step of ``cfg`` and its data-loading share."""
    torch.manual_seed(cfg.common.seed)
    backbone = create_backbone(cfg.common)
    objective = OBJECTIVES[cfg.objective_name].build(cfg.objective, backbone.num_features, resources)
    stamps: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        summary = train(Student(backbone, objective), dataset, cfg.common.model_copy(update={"steps": steps}),
                        Path(tmp), None, fingerprint=cfg.name, runtime=PretrainRuntime(checkpoint_every=10**9),
                        callback=lambda step, terms: stamps.append(time.perf_counter()))
    step_s = statistics.median(np.diff(stamps[warmup:]))
    return {"name": cfg.name, "step_s": step_s, "images_per_s": cfg.common.batch_size / step_s,
            "data_share": summary["data_share"], "loss": summary["final"]["loss"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--online", action="store_true", help="also time vivid_online with the default teacher")
    args = ap.parse_args()
    params, keys = section(PretrainParams, "pretrain"), fields()
    common = params.common
    n = max(common.batch_size * 4, 256)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (n, common.img_size, common.img_size), dtype=np.uint8)
    texts = None
    if args.online:
        from vivid_med.ums import cxr_record, provenance, target_text

        texts = [target_text(cxr_record({f: rng.choice([None, *STATE_VALUES]) for f in keys}, "PA", provenance()),
                             keys) for _ in range(n)]
    dataset = PretrainDataset([pixels], np.zeros(n, int), np.arange(n), rng.integers(0, NULL_CODE + 1, (n, len(keys))),
                              rng.integers(0, 64, n), texts, augmentation(common.img_size, common.augment))
    g = torch.Generator().manual_seed(0)
    cache = TeacherCache(keys, STATE_VALUES, torch.randn(len(keys), 3, TEACHER_DIM, generator=g),
                         [f"t{i}" for i in range(64)], torch.randn(64, TEACHER_DIM, generator=g), {})
    resources = Resources(keys, seed=common.seed, teacher_cache=cache)
    names = ["bce", "vivid", "bce", "vivid"]
    if args.online:
        from vivid_med.teacher.convert import teacher_name
        from vivid_med.teacher.config import TeacherParams
        from vivid_med.teacher.load import load_teacher

        folder = Path("models/teacher") / teacher_name(section(TeacherParams, "teacher").model)
        resources.language_model = load_teacher(folder, head=True)
        names.append("vivid_online")
    results = []
    for name in names:
        online = name == "vivid_online"
        r = run(params.resolve(name), resources, dataset, 1 + 2 if online else args.warmup + args.steps,
                1 if online else args.warmup)
        results.append(r)
        print(f"{name:>16}: {r['step_s'] * 1000:7.1f} ms/step  {r['images_per_s']:6.1f} img/s  "
              f"data {100 * r['data_share']:.1f}% of the step", flush=True)
    best = {k: min(r["step_s"] for r in results if r["name"] == k) for k in ("vivid", "bce")}
    print(f"threads {torch.get_num_threads()}, batch {common.batch_size}, {common.model} "
          f"{common.img_size}px/{common.patch_size} {common.kwargs}")
    print(f"step_time_ratio vivid/bce = {best['vivid'] / best['bce']:.3f}")


if __name__ == "__main__":
    main()
