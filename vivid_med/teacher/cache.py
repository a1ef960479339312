"""The teacher cache: one embedding per distinct target and per (field, state), computed once.

``data/teacher/<variant>/`` holds ``prototypes.safetensors`` ([F,S,D] float32), ``targets.parquet``
(``target_hash`` string, ``embedding`` fixed-size list<float32>[D]) and ``manifest.json``. Embeddings are pooled
and centred in float64 and rounded to float32 once, at the end (with ``teacher.dtype: float64`` the model runs in
float64 too, so two CPUs give the same cache bytes; docs/teacher.md measures the cost). Finished
target batches are written as shards to a work folder first, so an interrupted run resumes without
recomputing them; under torchrun each process embeds its share of the distinct targets and rank 0
merges. Forward passes = distinct targets + fields x states, counted at the model.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm import tqdm

from vivid_med.fields import DISPLAY_NAMES
from vivid_med.io import atomic_dir, atomic_path, failpoint, write_json
from vivid_med.states import STATE_VALUES
from vivid_med.runtime import TeacherRuntime
from vivid_med.teacher.config import TeacherParams
from vivid_med.teacher.embed import EMBED_VERSION, RELATED, UNRELATED, Embedder, semantic_margin

PROTOTYPES, TARGETS, MANIFEST = "prototypes.safetensors", "targets.parquet", "manifest.json"
#: Manifest keys that must agree for a cache (or a work shard) to be reused.
IDENTITY = ("teacher", "fingerprint", "variant", "template", "pooling", "layer", "fields", "dtype", "embed_version")
#: Facts about one run (returned, printed as metrics) that stay out of manifest.json.
RUN_KEYS = ("seconds", "forward_passes_this_run", "processes")


class CacheMismatchError(ValueError):
    """A cache or work shard was made by another teacher, variant, template or pooling."""


@dataclass
class TeacherCache:
    """Loaded cache. prototypes [F,S,D], targets [T,D] (float32, rows in ``target_hashes`` order)."""

    fields: tuple[str, ...]
    states: tuple[str, ...]
    prototypes: Tensor
    target_hashes: list[str]
    targets: Tensor
    manifest: dict

    def __post_init__(self) -> None:
        self._row = {h: i for i, h in enumerate(self.target_hashes)}

    def target_rows(self, hashes: list[str]) -> Tensor:
        """Rows of ``targets`` for ``hashes`` -> LongTensor [len(hashes)]; KeyError naming a missing hash."""
        try:
            return torch.tensor([self._row[h] for h in hashes], dtype=torch.long)
        except KeyError as e:
            raise KeyError(f"target_hash {e.args[0]} not in the teacher cache "
                           f"({self.manifest.get('variant')}, {len(self._row)} targets): rerun stage teacher") from None


def check_identity(found: dict, expect: dict, what: str) -> None:
    """Raise CacheMismatchError naming every identity key where ``found`` differs from ``expect``."""
    bad = [k for k in IDENTITY if k in expect and found.get(k) != expect[k]]
    if bad:
        detail = "; ".join(f"{k}: {found.get(k)!r} != expected {expect[k]!r}" for k in bad)
        raise CacheMismatchError(f"{what} was made by another teacher setup ({detail}); refusing to mix")


def write_embeddings(path: Path, hashes: list[str], emb: Tensor, metadata: dict[str, Any]) -> None:
    """Parquet (target_hash, embedding fixed-size list of ``emb``'s float dtype) with JSON ``metadata``, written
    atomically (work shards keep float64; the cache's targets are float32)."""
    arr = emb.numpy()
    col = pa.FixedSizeListArray.from_arrays(pa.array(arr.reshape(-1)), arr.shape[1])
    table = pa.table({"target_hash": pa.array(hashes, pa.string()), "embedding": col})
    table = table.replace_schema_metadata({"vivid_med": json.dumps(metadata, sort_keys=True)})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_embeddings(path: Path) -> tuple[list[str], Tensor, dict]:
    """Inverse of ``write_embeddings``: (hashes, [N,D] in the stored float dtype, metadata)."""
    table = pq.read_table(path)
    col = table.column("embedding").combine_chunks()
    dim = col.type.list_size
    emb = torch.from_numpy(col.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim).copy())
    meta = json.loads((table.schema.metadata or {}).get(b"vivid_med", b"{}"))
    return table.column("target_hash").to_pylist(), emb, meta


def load_cache(dir: str | Path, expect: dict | None = None) -> TeacherCache:
    """Read ``data/teacher/<variant>/``; with ``expect`` (e.g. {"variant": "random"}) refuse a mismatch."""
    dir = Path(dir)
    for name in (MANIFEST, PROTOTYPES, TARGETS):
        if not (dir / name).is_file():
            raise FileNotFoundError(f"teacher cache {dir}: {name} missing (run `dvc repro teacher`)")
    manifest = json.loads((dir / MANIFEST).read_text())
    check_identity(manifest, expect or {}, f"teacher cache {dir}")
    protos = load_file(dir / PROTOTYPES)["prototypes"]
    hashes, targets, meta = read_embeddings(dir / TARGETS)
    check_identity(meta, manifest, f"{dir / TARGETS}")
    fields, states = tuple(manifest["fields"]), tuple(manifest["states"])
    want = (len(fields), len(states), manifest["dim"])
    if tuple(protos.shape) != want or tuple(targets.shape) != (manifest["n_targets"], manifest["dim"]):
        raise ValueError(f"teacher cache {dir}: prototypes {tuple(protos.shape)} / targets {tuple(targets.shape)} "
                         f"disagree with the manifest ({want}, n_targets {manifest['n_targets']})")
    return TeacherCache(fields, states, protos, hashes, targets, manifest)


def distinct_targets(records: list[Path], fields: tuple[str, ...]) -> dict[str, str]:
    """target_hash -> target JSON text over ``fields``, one per distinct hash of the records tables.

    The text is re-rendered from the row's ``ums_json`` and must hash to the row's ``target_hash``
    (it does not when the records were made with other fields): a clear error names the file and row.
    """
    from vivid_med.tables import read_records
    from vivid_med.ums import UMSRecord, target_hash, target_text

    if not records:
        raise FileNotFoundError("no records tables (data/records/*.parquet): run stage records")
    out: dict[str, str] = {}
    for path in records:
        df = read_records(path)
        first = df.drop_duplicates("target_hash")
        for row, h, ums in zip(first.index, first["target_hash"], first["ums_json"]):
            if h in out:
                continue
            text = target_text(UMSRecord.model_validate_json(ums), fields)
            if target_hash(text) != h:
                raise ValueError(f"{path} row {row}: target_hash {h[:12]}... is not the hash of the target over "
                                 f"teacher fields {list(fields)} (records made with other fields?)")
            out[h] = text
    return out


def identity(embedder: Embedder, dtype: str) -> dict:
    t = embedder.teacher
    return {"teacher": t.name, "fingerprint": t.fingerprint, "variant": t.variant, "template": embedder.template_info(),
            "pooling": embedder.pooling, "layer": t.layer, "fields": list(embedder.fields), "dtype": dtype,
            "embed_version": EMBED_VERSION}


def _dist() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _barrier() -> None:
    if _dist()[1] > 1:
        torch.distributed.barrier()


def _work_shards(work: Path, ident: dict) -> dict[str, Path]:
    """Finished shards in ``work``: target hash -> shard; refuses a shard made by another setup."""
    done: dict[str, Path] = {}
    for shard in sorted(work.glob("*.parquet")):
        hashes, _, meta = read_embeddings(shard)
        check_identity(meta, ident, f"work shard {shard}")
        done.update(dict.fromkeys(hashes, shard))
    return done


def build_cache(embedder: Embedder, targets: dict[str, str], out_dir: Path, work_root: Path, *,
                centre: bool = True, batch_size: int = 16, dtype: str = "float32", progress: bool = True) -> dict | None:
    """Embed every (field, state) and every distinct target; write ``out_dir``; return the manifest (rank 0)
    plus the run's ``seconds`` and ``forward_passes_this_run``.

    targets: target_hash -> target JSON text. work_root: persistent folder; shards live in a subfolder
    named by the cache identity, so different setups never mix. Under torchrun (process group initialised)
    each rank embeds its share of the missing targets.
    """
    t0 = time.time()
    rank, world = _dist()
    ident = identity(embedder, dtype)
    key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    work = Path(work_root) / key
    work.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        (work / "identity.json").write_text(json.dumps(ident, indent=1, sort_keys=True))
    done = _work_shards(work, ident)
    _barrier()  # every rank sees the same finished shards before any rank writes a new one
    todo = sorted(h for h in targets if h not in done)
    todo = todo[rank::world]
    if rank == 0:
        print(f"teacher {ident['teacher']}@{ident['variant']}: {len(targets)} distinct targets, {len(done)} done "
              f"in {work}, {len(todo) * world} to embed on {world} process(es)")
    # batches of similar length, each written as a shard as soon as it is finished
    enc_len = {h: len(targets[h]) for h in todo}
    todo.sort(key=lambda h: (enc_len[h], h))
    for s in tqdm(range(0, len(todo), batch_size), desc=f"targets[{rank}]", disable=not progress, unit="batch",
                  position=rank):
        chunk = todo[s:s + batch_size]
        before = embedder.forward_passes
        emb = embedder.embed([targets[h] for h in chunk], batch_size=batch_size)
        meta = {**ident, "forward_passes": embedder.forward_passes - before}
        write_embeddings(work / f"{chunk[0][:24]}-{len(chunk)}.parquet", chunk, emb, meta)
        failpoint("teacher:batch")
    _barrier()
    if rank != 0:
        return None
    before = embedder.forward_passes
    raw = embedder.prototypes(batch_size)  # [F,S,D]
    proto_passes = embedder.forward_passes - before
    mean = raw.reshape(-1, raw.shape[-1]).mean(0) if centre else torch.zeros(raw.shape[-1], dtype=torch.float64)
    earlier = set(done.values())
    done = _work_shards(work, ident)
    missing = [h for h in targets if h not in done]
    if missing:
        raise RuntimeError(f"{len(missing)} target(s) missing from {work} after embedding (e.g. {missing[0]})")
    hashes = sorted(targets)
    emb, rows = torch.empty(len(hashes), raw.shape[-1], dtype=torch.float64), {h: i for i, h in enumerate(hashes)}
    target_passes = new_passes = 0
    for shard in sorted({done[h] for h in hashes}):
        sh, e, meta = read_embeddings(shard)
        target_passes += meta["forward_passes"]
        new_passes += 0 if shard in earlier else meta["forward_passes"]
        for h, v in zip(sh, e):
            if h in rows:
                emb[rows[h]] = v
    manifest = {
        **ident, "states": list(STATE_VALUES), "dim": int(raw.shape[-1]), "n_targets": len(hashes),
        "n_prototypes": int(raw.shape[0] * raw.shape[1]), "forward_passes": target_passes + proto_passes,
        "forward_passes_this_run": new_passes + proto_passes,
        "centre": mean.float().tolist() if centre else None, "field_names": [DISPLAY_NAMES[f] for f in embedder.fields],
        "n_layers": embedder.teacher.n_layers, "seed": embedder.teacher.seed, "processes": world,
        "seconds": round(time.time() - t0, 2), "work": str(work), "semantic": None,
    }
    prototypes, embeddings = (raw - mean).float(), (emb - mean).float()  # rounded to float32 once, here
    names = {DISPLAY_NAMES[f] for f in embedder.fields}
    if all(a in names and b in names for a, b in RELATED + UNRELATED):
        sem = semantic_margin(prototypes, embedder.fields)
        manifest["semantic"] = {k: round(v, 4) for k, v in sem.items() if k != "pairs"}
    with atomic_dir(out_dir) as tmp:  # a complete cache or the previous one, never a mix
        save_file({"prototypes": prototypes.contiguous()}, str(tmp / PROTOTYPES))
        write_embeddings(tmp / TARGETS, hashes, embeddings, ident)
        stable = {k: v for k, v in manifest.items() if k not in RUN_KEYS}  # same params -> same bytes
        write_json(tmp / MANIFEST, stable, indent=1)
    return manifest


def run(variant: str, params: TeacherParams, fields: tuple[str, ...], records_dir: Path, models_dir: Path,
        out_dir: Path, work_dir: Path, runtime: TeacherRuntime = TeacherRuntime()) -> dict | None:
    """The cache of teacher ``variant`` for every distinct target of ``records_dir/*.parquet`` (the stage
    ``teacher@<variant>``): writes ``out_dir`` and returns the manifest (rank 0; None on other ranks)."""
    from vivid_med.teacher.convert import teacher_name
    from vivid_med.teacher.load import load_teacher

    if variant not in params.variants:
        raise ValueError(f"teacher variant {variant!r} is not in teacher.variants {params.variants}")
    records = sorted(p for p in Path(records_dir).glob("*.parquet") if not p.name.endswith(".rejects.parquet"))
    targets = distinct_targets(records, fields)
    teacher = load_teacher(Path(models_dir) / teacher_name(params.model), variant, layer=params.layer,
                           dtype=params.dtype, device=runtime.device, seed=params.seed,
                           trust_remote_code=params.trust_remote_code)
    embedder = Embedder(teacher, params.pooling, params.template, fields)
    return build_cache(embedder, targets, Path(out_dir), Path(work_dir), centre=params.centre,
                       batch_size=runtime.batch_size, dtype=params.dtype)
