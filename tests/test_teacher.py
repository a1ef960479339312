"""Teacher loading, embedding and the cache, on a tiny random Llama with an in-process BPE tokenizer."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from vivid_med.fields import FIELDS, PRETRAIN_FIELDS
from vivid_med.states import STATE_VALUES
from vivid_med.tables import write_records
from vivid_med.teacher.cache import CacheMismatchError, build_cache, distinct_targets, load_cache
from tiny_teacher import write_tiny
from vivid_med.teacher.embed import Embedder, TemplateError, prototype_text
from vivid_med.teacher.load import Teacher, load_teacher
from vivid_med.ums import UMSRecord, cxr_record, provenance, target_hash, target_text


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    return write_tiny(tmp_path_factory.mktemp("tiny") / "tiny", layers=4)


def make_records(n: int, seed: int = 0) -> list[UMSRecord]:
    """n records with distinct targets (random states over the pretraining fields and views)."""
    rng, out = random.Random(seed), {}
    while len(out) < n:
        states = {f: rng.choice([None, None, *STATE_VALUES]) for f in PRETRAIN_FIELDS}
        rec = cxr_record(states, rng.choice(["PA", "AP", None]), provenance())
        out[target_text(rec)] = rec
    return list(out.values())


def make_targets(n: int, seed: int = 0) -> dict[str, str]:
    """n distinct target texts keyed by hash."""
    return {target_hash(t): t for t in map(target_text, make_records(n, seed))}


def records_frame(records: list[UMSRecord]) -> pd.DataFrame:
    """A records table (RECORDS_SCHEMA columns) with one image per record."""
    return pd.DataFrame([
        {"dataset": "d", "study_id": str(i), "patient_id": "p", "image_id": f"i{i}", "image_path": "x.png",
         "view": rec.study_view, "split": "train", "report": None, "ums_json": rec.model_dump_json(),
         "target_hash": target_hash(target_text(rec)), **{f: getattr(rec.findings, f).state for f in FIELDS}}
        for i, rec in enumerate(records)])


def embedder(folder, layer: int = 2, **kw) -> Embedder:
    return Embedder(load_teacher(folder, layer=layer, variant=kw.pop("variant", "pretrained")),
                    kw.pop("pooling", "name_state"), kw.pop("template", "chat"), PRETRAIN_FIELDS, **kw)


def test_truncated_model_equals_full_hidden_state(tiny_dir):
    full, cut = load_teacher(tiny_dir), load_teacher(tiny_dir, layer=2)
    assert len(cut.model.layers) == 2 and full.n_layers == cut.n_layers == 4
    ids = torch.tensor([[5, 9, 30, 41, 7, 12]])
    with torch.no_grad():
        want = full.model(input_ids=ids, output_hidden_states=True).hidden_states[2]
        got = cut.model(input_ids=ids, output_hidden_states=True).hidden_states[2]
    torch.testing.assert_close(got, want)


def test_embedding_independent_of_batch_and_padding(tiny_dir):
    answers = list(make_targets(7).values()) + [prototype_text("edema", "present")]
    names = [None] * 7 + [["Edema"]]
    right = embedder(tiny_dir)
    alone = torch.cat([right.embed([a], None if n is None else [n], batch_size=1) for a, n in zip(answers, names)])
    names_all = [n or right.names for n in names]
    batched = right.embed(answers, names_all, batch_size=8)
    left = embedder(tiny_dir, padding_side="left").embed(answers, names_all, batch_size=3)
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(left, alone, atol=1e-5, rtol=1e-4)


def test_prototypes_separate_states_and_fields(tiny_dir):
    p = embedder(tiny_dir).prototypes()
    assert p.shape == (len(PRETRAIN_FIELDS), len(STATE_VALUES), 64)
    assert (p[:, 0] - p[:, 1]).abs().amax(-1).min() > 1e-3  # every field: present != absent
    assert (p[0] - p[1]).abs().amax() > 1e-3


def test_cache_counts_passes_and_round_trips(tiny_dir, tmp_path):
    targets = make_targets(20)
    emb = embedder(tiny_dir)
    m = build_cache(emb, targets, tmp_path / "out", tmp_path / "work", batch_size=6, progress=False)
    assert m["forward_passes"] == emb.forward_passes == len(targets) + len(PRETRAIN_FIELDS) * len(STATE_VALUES)
    cache = load_cache(tmp_path / "out", expect={"variant": "pretrained", "fingerprint": emb.teacher.fingerprint})
    assert cache.targets.shape == (20, 64) and cache.prototypes.shape == (12, 3, 64)
    assert cache.fields == PRETRAIN_FIELDS and cache.states == STATE_VALUES
    torch.testing.assert_close(cache.prototypes.reshape(-1, 64).mean(0), torch.zeros(64), atol=1e-5, rtol=0)
    hashes = list(targets)[:3]
    rows = cache.target_rows(hashes)
    centre = torch.tensor(cache.manifest["centre"])
    fresh = (embedder(tiny_dir).embed([targets[h] for h in hashes]) - centre.double()).float()
    torch.testing.assert_close(cache.targets[rows], fresh, atol=1e-5, rtol=1e-4)
    with pytest.raises(KeyError, match="not in the teacher cache"):
        cache.target_rows(["0" * 64])
    for key in ("teacher", "fingerprint", "variant", "template", "pooling", "layer", "dim", "n_targets",
                "n_prototypes", "forward_passes", "fields", "states", "centre"):
        assert key in cache.manifest


def test_interrupted_run_resumes_without_recomputing(tiny_dir, tmp_path, monkeypatch):
    targets, emb = make_targets(20, seed=1), embedder(tiny_dir)
    calls, real = [], Embedder.embed

    def flaky(self, *a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, *a, **kw)

    monkeypatch.setattr(Embedder, "embed", flaky)
    with pytest.raises(KeyboardInterrupt):
        build_cache(emb, targets, tmp_path / "out", tmp_path / "work", batch_size=5, progress=False)
    monkeypatch.setattr(Embedder, "embed", real)
    again = embedder(tiny_dir)
    m = build_cache(again, targets, tmp_path / "out", tmp_path / "work", batch_size=5, progress=False)
    assert m["forward_passes_this_run"] == again.forward_passes == 20 - 2 * 5 + 36
    assert m["forward_passes"] == 20 + 36
    fresh = build_cache(embedder(tiny_dir), targets, tmp_path / "out2", tmp_path / "work2", progress=False)
    a, b = load_cache(tmp_path / "out"), load_cache(tmp_path / "out2")
    torch.testing.assert_close(a.targets, b.targets, atol=1e-5, rtol=1e-4)
    assert fresh["n_targets"] == 20


def test_refuses_cache_or_shard_of_another_setup(tiny_dir, tmp_path):
    targets = make_targets(4)
    emb = embedder(tiny_dir)
    build_cache(emb, targets, tmp_path / "out", tmp_path / "work", progress=False)
    for expect in ({"variant": "random"}, {"fingerprint": "f" * 64}, {"template": {"name": "plain"}}):
        with pytest.raises(CacheMismatchError, match="refusing to mix"):
            load_cache(tmp_path / "out", expect=expect)
    # a shard of the chat template smuggled into the plain template's work folder is refused
    plain = embedder(tiny_dir, template="plain")
    (key_dir,) = (tmp_path / "work").iterdir()
    build_cache(plain, targets, tmp_path / "out_p", tmp_path / "work", progress=False)
    plain_dir = next(d for d in (tmp_path / "work").iterdir() if d != key_dir)
    shutil.copy(next(key_dir.glob("*.parquet")), plain_dir / "foreign.parquet")
    with pytest.raises(CacheMismatchError, match="template"):
        build_cache(plain, targets, tmp_path / "out_p", tmp_path / "work", progress=False)


def test_random_variant_is_seeded(tiny_dir):
    a, b = load_teacher(tiny_dir, "random", layer=2, seed=0), load_teacher(tiny_dir, "random", layer=2, seed=0)
    c, p = load_teacher(tiny_dir, "random", layer=2, seed=1), load_teacher(tiny_dir, layer=2)
    assert a.fingerprint == b.fingerprint and len({a.fingerprint, c.fingerprint, p.fingerprint}) == 3
    for x, y in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(x, y)
    assert not torch.equal(a.model.embed_tokens.weight, p.model.embed_tokens.weight)


def test_clear_errors_before_compute(tiny_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        load_teacher(tmp_path / "nowhere", layer=2)
    with pytest.raises(ValueError, match="out of range"):
        load_teacher(tiny_dir, layer=5)
    with pytest.raises(ValueError, match="name tokens precede the state"):
        embedder(tiny_dir, pooling="name_tokens")
    no_chat = tmp_path / "nochat"
    shutil.copytree(tiny_dir, no_chat)
    (no_chat / "chat_template.jinja").unlink()
    with pytest.raises(TemplateError, match="no chat template"):
        embedder(no_chat)

    class NoHidden(torch.nn.Module):
        device = torch.device("cpu")

        def forward(self, input_ids, **kw):
            return {"logits": torch.zeros(*input_ids.shape, 3)}

    t = load_teacher(tiny_dir, layer=2)
    bare = Teacher(NoHidden(), t.tokenizer, "bare", "pretrained", "x", True, 4, 2, 64, None)
    with pytest.raises(ValueError, match="no hidden states"):
        Embedder(bare, "name_state", "chat", PRETRAIN_FIELDS)


def test_distinct_targets_from_records(tmp_path):
    recs = [cxr_record({"edema": e}, v, provenance()) for v, e in [("PA", "present"), ("PA", "present"), ("AP", None)]]
    df = records_frame(recs)
    write_records(df, tmp_path / "d.parquet", PRETRAIN_FIELDS)
    got = distinct_targets([tmp_path / "d.parquet"], PRETRAIN_FIELDS)
    assert len(got) == 2 and all(target_hash(t) == h for h, t in got.items())
    assert json.loads(got[df.target_hash[0]])["findings"]["Edema"] == {"state": "present"}
    with pytest.raises(ValueError, match=r"d.parquet row 0: target_hash"):
        distinct_targets([tmp_path / "d.parquet"], PRETRAIN_FIELDS[:5])


_CACHE_SCRIPT = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_teacher import make_targets
from vivid_med.fields import PRETRAIN_FIELDS
from vivid_med.teacher.cache import build_cache
from vivid_med.teacher.embed import Embedder
from vivid_med.teacher.load import load_teacher
teacher = load_teacher(Path(sys.argv[1]), layer=3, dtype=sys.argv[2])
build_cache(Embedder(teacher, "name_state", "chat", PRETRAIN_FIELDS), make_targets(12), Path(sys.argv[3]),
            Path(sys.argv[3] + "_work"), batch_size=4, dtype=sys.argv[2], progress=False)
"""


@pytest.mark.parametrize("dtype,same", [("float64", True), pytest.param("float32", False, marks=pytest.mark.slow)])
def test_float64_cache_has_the_same_bytes_on_other_cpu_kernels(tiny_dir, tmp_path, dtype, same):
    """Two CPU code paths (ATen's scalar 'default' kernels vs AVX2, as on another machine) give the same cache
    bytes with a float64 teacher; in float32 they differ (what a second machine saw)."""
    import hashlib
    import os
    import subprocess
    import sys

    script = _CACHE_SCRIPT.format(tests=str(Path(__file__).parent))
    digests = []
    for isa in ("default", "avx2"):
        out = tmp_path / f"{isa}_{dtype}"
        env = {**os.environ, "ATEN_CPU_CAPABILITY": isa, "OMP_NUM_THREADS": "1"}
        subprocess.run([sys.executable, "-c", script, str(tiny_dir), dtype, str(out)], env=env, check=True,
                       capture_output=True)
        digests.append({f: hashlib.sha256((out / f).read_bytes()).hexdigest()
                        for f in ("prototypes.safetensors", "targets.parquet")})
    assert (digests[0] == digests[1]) is same, digests


def test_a_float64_teacher_gives_the_same_bytes_at_any_batch_size(tiny_dir):
    """``teacher.batch_size`` is a runtime setting: with the default float64 teacher the rounded embeddings do not
    depend on it (a float32 teacher's do, in the last bits)."""
    emb = Embedder(load_teacher(tiny_dir, layer=3, dtype="float64"), "name_state", "chat", PRETRAIN_FIELDS)
    texts = list(make_targets(20).values())
    alone = emb.embed(texts, batch_size=1).float()
    for size in (7, 16):
        assert torch.equal(emb.embed(texts, batch_size=size).float(), alone)
