"""What each stage costs as the data grows (issue #13), with the machine's load average next to every timing.

    python benchmarks/scaling.py [--parts records teacher images other] [--rows 10000 50000 200000] [--out F]

- records: the records stage's library call (``vivid_med.records.run``, the registered ``chexpert`` kind,
  ``check_images: false``) on a synthetic ``train.csv`` in CheXpert's layout (benchmarks/chexpert_table.py:
  official columns, CheXpert-like label rates drawn independently per cell, no images); each size in a fresh
  process: wall time, peak RSS and distinct targets.
- teacher: the real cache (``vivid_med.teacher.cache.run``, params.yaml's teacher: the bundled SmolLM2 built to its
  layer) on a sample of rows, then on the sample repeated 10x (the same distinct targets): forward passes and
  seconds; the full sizes are extrapolated from the sample's seconds per pass.
- images: the images stage's ``build_store`` on the real Kermany JPEGs (../shared/data/kermany_pneumonia_224)
  against a plain PIL decode-and-resize loop, 1 and 2 workers, interleaved ``--repeats`` times (median ratio); and
  both per image at CheXpert-small and MIMIC-CXR-JPG resolutions (Kermany images resized to them).
- other: per-row and per-step costs that grow with the data (``other_costs``).
Writes one JSON (parts measured again replace theirs); docs/scaling.md quotes it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
KERMANY = Path(os.environ.get("VIVID_SHARED_DATA", REPO.parent / "shared" / "data")) / "kermany_pneumonia_224"
SIZE = 224  # the paper preset's store side
#: Typical (width, height) of the source files: CheXpert-v1.0-small JPEGs and MIMIC-CXR-JPG JPEGs.
RESOLUTIONS = {"chexpert_small": (320, 390), "mimic_cxr_jpg": (2544, 3056)}


def load() -> float:
    """The 1-minute load average (2 shared cores here: read every timing next to it)."""
    return round(os.getloadavg()[0], 2)


def fresh(fn, *args) -> Any:
    """``fn(*args)`` in a new process (spawned: its peak RSS is its own)."""
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def peak_rss_gib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)


def records_cost(root: str, out: str) -> dict[str, Any]:
    """The records stage's library call on the CheXpert folder ``root`` (child process): seconds, peak RSS."""
    from vivid_med.params import load_fields
    from vivid_med.records import RecordsParams, run

    before = peak_rss_gib()
    params = RecordsParams.model_validate({"sources": {"chexpert": {"kind": "chexpert", "root": root,
                                                                    "check_images": False}}, "llm_extractor": None})
    t, start = time.perf_counter(), load()
    counts = run(params, load_fields(REPO / "params.yaml"), Path(out))["chexpert"]
    return {"seconds": round(time.perf_counter() - t, 2), "peak_rss_gib": peak_rss_gib(), "rss_after_imports_gib":
            before, "accepted": counts["accepted"], "distinct_targets": counts["distinct_targets"],
            "load": [start, load()]}


def teacher_models(work: Path) -> Path:
    """models/teacher (the teacher_weights stage's output) when it holds the teacher, else a conversion in ``work``."""
    from vivid_med.params import load_section
    from vivid_med.teacher.config import TeacherParams
    from vivid_med.teacher.convert import convert, teacher_name

    name = teacher_name(load_section(TeacherParams, REPO / "params.yaml", "teacher").model)
    if (REPO / "models" / "teacher" / name / "config.json").is_file():
        return REPO / "models" / "teacher"
    convert(load_section(TeacherParams, REPO / "params.yaml", "teacher").model, work / "teacher" / name)
    return work / "teacher"


def teacher_cost(records: pd.DataFrame, copies: int, models: Path, work: Path) -> dict[str, Any]:
    """The real teacher cache (params.yaml's teacher) over ``records`` repeated ``copies`` times, from scratch."""
    from vivid_med.params import load_fields, load_section
    from vivid_med.tables import write_records
    from vivid_med.teacher.cache import run
    from vivid_med.teacher.config import TeacherParams

    fields = load_fields(REPO / "params.yaml")
    rows = pd.concat([records.assign(image_id=records["image_id"] + f"#{k}") for k in range(copies)])
    (work / "records").mkdir(parents=True)
    write_records(rows, work / "records" / "sample.parquet", fields)
    params = load_section(TeacherParams, REPO / "params.yaml", "teacher")
    t, start = time.perf_counter(), load()
    manifest = run("pretrained", params, fields, work / "records", models, work / "cache", work / "shards")
    return {"rows": len(rows), "distinct_targets": manifest["n_targets"], "forward_passes": manifest["forward_passes"],
            "seconds": round(time.perf_counter() - t, 2), "layer": params.layer, "dtype": params.dtype,
            "load": [start, load()]}


def pil_chunk(job: tuple[str, list[str], int]) -> np.ndarray:
    """The practical limit: PIL opens, decodes to grey and resizes (BOX); uint8 [n, size, size]."""
    root, paths, size = job
    out = np.empty((len(paths), size, size), np.uint8)
    for i, rel in enumerate(paths):
        with Image.open(Path(root) / rel) as im:
            out[i] = np.asarray(im.convert("L").resize((size, size), Image.BOX))
    return out


def pil_rate(paths: list[str], workers: int) -> float:
    """Images/s of the plain PIL loop (chunks of 32 over ``workers`` processes, as build_store chunks its jobs)."""
    jobs = [(str(KERMANY), paths[i:i + 32], SIZE) for i in range(0, len(paths), 32)]
    t = time.perf_counter()
    if workers == 1:
        list(map(pil_chunk, jobs))
    else:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(pil_chunk, jobs))
    return len(paths) / (time.perf_counter() - t)


def max_pixels() -> int:
    """params.yaml's images.max_pixels: the stage always passes one (the parameter is required), and checking it
    may cost a header read, so the comparison runs the stage's library call with it."""
    return int(yaml.safe_load((REPO / "params.yaml").read_text())["images"]["max_pixels"])


def store_rate(records: pd.DataFrame, out: Path, workers: int) -> float:
    """Images/s of the images stage's library call (``build_store``) on the same files."""
    from vivid_med.imaging import build_store

    t = time.perf_counter()
    counts = build_store(records, KERMANY, out, SIZE, None, workers, max_pixels())
    assert counts["accepted"] == len(records), counts
    return len(records) / (time.perf_counter() - t)


def images_comparison(work: Path, repeats: int) -> dict[str, Any]:
    """build_store vs the PIL loop on every Kermany JPEG, interleaved; the median ratio per worker count."""
    labels = pd.read_csv(KERMANY / "labels.csv")
    records = pd.DataFrame({"image_id": labels["path"], "image_path": labels["path"]})
    runs = []
    for rep in range(repeats):
        for workers in (1, 2):
            limit, l0 = pil_rate(records["image_path"].tolist(), workers), load()
            store, l1 = store_rate(records, work / f"store{rep}{workers}", workers), load()
            runs.append({"repeat": rep, "workers": workers, "pil_images_per_s": round(limit, 1), "load_pil": l0,
                         "store_images_per_s": round(store, 1), "load_store": l1, "ratio": round(store / limit, 3)})
            print(f"images x{workers}: store {store:.0f}/s, PIL {limit:.0f}/s, ratio {store / limit:.2f} "
                  f"(load {l0}, {l1})", flush=True)
    median = {w: statistics.median(r["ratio"] for r in runs if r["workers"] == w) for w in (1, 2)}
    return {"images": len(records), "size": SIZE, "runs": runs, "median_ratio": median}


def resolution_costs(work: Path, n: int = 32) -> dict[str, Any]:
    """Seconds per image of ``build_store`` (1 worker) and of the PIL loop on Kermany JPEGs resized to the source
    resolutions of CheXpert-small and MIMIC-CXR-JPG (quality 95): what decoding costs at the real sizes."""
    from vivid_med.imaging import build_store

    paths = pd.read_csv(KERMANY / "labels.csv")["path"].tolist()[:n]
    out = {}
    for name, wh in RESOLUTIONS.items():
        folder = work / name
        folder.mkdir(parents=True)
        for i, rel in enumerate(paths):
            with Image.open(KERMANY / rel) as im:
                im.convert("L").resize(wh, Image.BICUBIC).save(folder / f"{i}.jpg", quality=95)
        files = [f"{i}.jpg" for i in range(len(paths))]
        start = load()
        t = time.perf_counter()
        pil_chunk((str(folder), files, SIZE))
        pil = (time.perf_counter() - t) / len(files)
        records = pd.DataFrame({"image_id": files, "image_path": files})
        t = time.perf_counter()
        build_store(records, folder, work / f"{name}_store", SIZE, None, 1, max_pixels())
        out[name] = {"width_height": wh, "store_s": round((time.perf_counter() - t) / len(files), 4),
                     "pil_s": round(pil, 4), "load": [start, load()]}
    return out


def other_costs(seconds: float = 15.0) -> dict[str, Any]:
    """Per-row and per-step costs that grow with the data: sha256 GB/s over pixels (pretrain's checkpoint key,
    evaluate's feature key), ``extract`` images/s of ViT-B/16 at 224 px (3 channels) on this CPU, samples/s of one
    DataLoader worker with the paper's augmentations at 224 px, ``StepBatches``' per-step permutation at CheXpert
    and MIMIC size, and UMS records validated per second (vivid_online re-reads every row's ``ums_json``)."""
    import torch
    from torch.utils.data import DataLoader

    from vivid_med.data import AugmentParams, PretrainDataset, StepBatches, augmentation
    from vivid_med.evaluate.features import extract
    from vivid_med.student import BackboneParams, create_backbone
    from vivid_med.ums import UMSRecord, cxr_record, provenance

    out: dict[str, Any] = {"load": [load()], "threads": torch.get_num_threads()}
    buf = np.random.default_rng(0).integers(0, 256, 2**28, dtype=np.uint8)
    t = time.perf_counter()
    hashlib.sha256(memoryview(buf)).hexdigest()
    out["sha256_gb_per_s"] = round(buf.nbytes / (time.perf_counter() - t) / 1e9, 2)
    torch.manual_seed(0)
    vit = create_backbone(BackboneParams(model="vit_base_patch16_224", img_size=SIZE, patch_size=16, in_chans=3,
                                         kwargs={}, pretrained=False))
    images = np.random.default_rng(0).integers(0, 256, (256, SIZE, SIZE), dtype=np.uint8)
    extract(vit, images[:4], 4)  # warm-up
    done, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        extract(vit, images[:16], 16)
        done += 16
    out["extract_vit_b16_cpu_images_per_s"] = round(done / (time.perf_counter() - t), 2)
    augment = AugmentParams.model_validate(yaml.safe_load((REPO / "params.yaml").read_text())["pretrain"]["common"]
                                           ["augment"])  # params.paper.yaml keeps these
    data = PretrainDataset([images], np.zeros(256, np.int64), np.arange(256), np.zeros((256, 12), np.int64),
                           transform=augmentation(SIZE, augment))
    loader = iter(DataLoader(data, batch_sampler=StepBatches(256, 32, 0, 0, 10**6), num_workers=1))
    next(loader)
    done, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        done += len(next(loader)["image"])
    out["augment_one_worker_samples_per_s"] = round(done / (time.perf_counter() - t), 1)
    for name, n in (("chexpert", 224_316), ("mimic", 377_110)):
        batches = StepBatches(n, 32, 0, 0, 50)
        t = time.perf_counter()
        for step in range(50):
            batches.step_batch(step)
        out[f"step_batch_ms_{name}"] = round((time.perf_counter() - t) / 50 * 1000, 2)
    text = cxr_record({"edema": "present", "cardiomegaly": "absent"}, "PA", provenance()).model_dump_json()
    t = time.perf_counter()
    for _ in range(2000):
        UMSRecord.model_validate_json(text)
    out["ums_records_validated_per_s"] = round(2000 / (time.perf_counter() - t))
    out["load"].append(load())
    return out


def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The parts of ``args.parts``, merged into what ``args.out`` already holds."""
    from chexpert_table import write_table  # benchmarks/: CheXpert's train.csv layout

    git = ["git", "-C", str(REPO)]
    out: dict[str, Any] = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    out.update(cpus=os.cpu_count(), commit=subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True,
                                                          text=True).stdout.strip(),
               uncommitted=subprocess.run([*git, "status", "--porcelain", "vivid_med"], capture_output=True,
                                          text=True).stdout.splitlines())
    if "records" in args.parts:
        out["records"] = {}
        for n in args.rows:
            write_table(work / f"chexpert{n}", n)
            out["records"][n] = fresh(records_cost, str(work / f"chexpert{n}"), str(work / f"records{n}"))
            print(f"records {n}: {out['records'][n]}", flush=True)
    if "teacher" in args.parts:
        from vivid_med.tables import read_records

        sample = read_records(work / f"records{min(args.rows)}" / "chexpert.parquet").head(args.teacher_sample)
        out["teacher"] = [teacher_cost(sample, k, teacher_models(work), work / f"teacher{k}") for k in (1, 10)]
        print(f"teacher: {out['teacher']}", flush=True)
        per_pass = out["teacher"][0]["seconds"] / out["teacher"][0]["forward_passes"]
        n_protos = out["teacher"][0]["forward_passes"] - out["teacher"][0]["distinct_targets"]
        out["teacher_extrapolated_s"] = {n: round((r["distinct_targets"] + n_protos) * per_pass)
                                         for n, r in out["records"].items()}
    if "images" in args.parts:
        out["images"] = images_comparison(work, args.repeats)
        out["resolutions"] = resolution_costs(work)
    if "other" in args.parts:
        out["other"] = other_costs()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", nargs="+", default=["records", "teacher", "images", "other"],
                    help="what to measure (default: all; teacher needs records in the same run)")
    ap.add_argument("--rows", type=int, nargs="+", default=[10_000, 50_000, 200_000])
    ap.add_argument("--teacher-sample", type=int, default=400, help="rows of the smallest table the cache embeds")
    ap.add_argument("--repeats", type=int, default=3, help="repeats of the images comparison")
    ap.add_argument("--out", default="scaling.json", help="JSON; parts measured again replace theirs in it")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="scaling_") as work:
        out = measure(args, Path(work))
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: out.get(k) for k in ("teacher_extrapolated_s", "other")}, indent=1))

if __name__ == "__main__":
    main()
