"""Stage ``export``: the product backbone (``pretrain.export``, passed by dvc.yaml) in models/product/: timm's
``config.json`` + ``model.safetensors`` as pretrain exported them, and a model card, ``README.md`` with the Hub's
front matter (library, license, tags, datasets, the evaluation as ``model-index``).

The folder is built aside and swapped into place whole (``vivid_med.io.atomic_dir``): a killed export leaves the
previous product or none. The stage needs neither torch nor timm (the tests load the product with timm).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCardData
from safetensors import safe_open

from vivid_med.io import atomic_dir, failpoint

OUT = Path("models/product")
#: timm's files of an export (vivid_med.student.export.CONFIG_FILE, WEIGHTS_FILE) and vivid-med's sidecar.
TIMM_FILES, SIDECAR = ("config.json", "model.safetensors"), "vivid_heads.json"
#: summary column title -> (its protocol: a key of summary["data"], the Hub's metric type). Other titles are shown
#: in the card's table but left out of model-index.
PROTOCOLS: dict[str, tuple[str, str]] = {
    "CheXpert-12 AUC": ("chexpert_paper", "roc_auc"),
    "CheXpert-12 F1": ("chexpert_paper", "f1"),
    "NIH-8 AUC": ("nih8", "roc_auc"),
    "LIDC AUC": ("lidc", "roc_auc"),
    "OrganAMNIST AUC": ("organamnist", "roc_auc"),
    "OrganAMNIST acc": ("organamnist", "accuracy"),
    "standard 1% labels": ("chexpert_standard", "roc_auc"),
    "standard 10% labels": ("chexpert_standard", "roc_auc"),
    "standard 100% labels": ("chexpert_standard", "roc_auc"),
}
PROBE = ("linear probe on the frozen backbone's pooled (CLS) features; hyper-parameters chosen on the val split, "
         "scored on test; mean ± std over probe seeds")


def tensor_count(weights: Path) -> int:
    """Number of values in a safetensors file (read from its header)."""
    with safe_open(weights, framework="numpy") as f:
        return sum(math.prod(f.get_slice(key).get_shape()) for key in f.keys())


def training_data(pretrain: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(synthetic, real) datasets the backbone trained on, from its pretrain metrics (``synthetic_data``; real ones
    are known where the metrics name every dataset under ``datasets``)."""
    synthetic = list(pretrain.get("synthetic_data", []))
    return synthetic, [d for d in pretrain.get("datasets", []) if d not in synthetic]


def eval_results(row: dict[str, Any], summary: dict[str, Any]) -> list[EvalResult]:
    """The Hub's ``model-index`` entries: one per scored column of ``row`` whose protocol is known."""
    out = []
    for title, stat in row.items():
        if title not in PROTOCOLS or not isinstance(stat, dict) or stat.get("mean") is None:
            continue
        protocol, metric = PROTOCOLS[title]
        dataset = summary.get("data", {}).get(protocol, protocol).split(":")[0].split()[0]
        synthetic = " (SYNTHETIC demo data)" if dataset in summary.get("synthetic_data", []) else ""
        out.append(EvalResult(
            task_type="image-classification", task_name=f"Linear probe, frozen backbone ({protocol})",
            dataset_type=dataset, dataset_name=f"{dataset}{synthetic}", dataset_split="test",
            metric_type=metric, metric_value=stat["mean"],
            metric_name=f"{title} (mean of {stat.get('n')} probe seeds, std {stat.get('std')})"))
    return out


def front_matter(run: str, objective: str, row: dict[str, Any], summary: dict[str, Any],
                 trained_on: list[str], synthetic: bool) -> str:
    results = eval_results(row, summary)
    datasets = list(dict.fromkeys([*trained_on, *(r.dataset_type for r in results)]))
    tags = ["timm", "image-feature-extraction", "vision-transformer", "medical-imaging", "chest-x-ray", "vivid-med",
            f"objective-{objective}", *(["synthetic-data"] if synthetic else [])]
    card = ModelCardData(library_name="timm", license="apache-2.0", pipeline_tag="image-feature-extraction",
                         tags=tags, datasets=datasets or None,
                         metrics=sorted({r.metric_type for r in results}) or None,
                         model_name=f"vivid-med-{run}", eval_results=results or None)
    return f"---\n{card.to_yaml()}\n---\n"


def _cell(stat: Any) -> str:
    if not isinstance(stat, dict) or stat.get("mean") is None:
        return "n/a"
    return f"{stat['mean']:.4f} ± {stat['std']:.4f} (n={stat.get('n')})"


def model_card(run: str, config: dict[str, Any], sidecar: dict[str, Any], summary: dict[str, Any],
               pretrain: dict[str, Any], n_params: int, n_bytes: int) -> str:
    """README.md: Hub front matter, then what the backbone is, its one-line load, its normalisation, the
    evaluation with its protocol, the data behind it, and how to publish it."""
    row = summary["backbones"].get(run) or {}
    synthetic, real = training_data(pretrain)
    cfg, args = config["pretrained_cfg"], config.get("model_args", {})
    c, h, w = cfg["input_size"]
    repo = f"<user>/vivid-med-{run}"
    if real:
        also = f" (and SYNTHETIC {', '.join(synthetic)})" if synthetic else ""
        data = (f"**Trained on real data: {', '.join(real)}**{also}. The weights are derived from it: check the "
                "data-use agreements of these datasets before sharing or publishing them. The Apache-2.0 license "
                "covers vivid-med's code.")
    elif synthetic:
        data = (f"**The weights come from SYNTHETIC demo data** ({', '.join(synthetic)}, vivid-med's built-in "
                "cohort): they show that the pipeline works, nothing about real patients. License: Apache-2.0 "
                "(vivid-med's code; the synthetic data carry no other terms).")
    else:
        data = (f"**Training data not recorded** (metrics/pretrain/{run}.json names none): find out which data the "
                "weights come from, and their terms, before sharing them. The Apache-2.0 license covers "
                "vivid-med's code.")
    evaluated = ", ".join(summary.get("synthetic_data", [])) or "none"
    protocols = summary.get("data", {})
    rows = "\n".join(f"| {title} | {_cell(stat)} | {protocols.get(PROTOCOLS.get(title, ('',))[0], '')} |"
                     for title, stat in row.items())
    meta = front_matter(run, sidecar["objective"], row, summary, [*real, *synthetic], bool(synthetic) and not real)
    return f"""{meta}
# vivid-med backbone `{run}`

A timm `{config['architecture']}` without classifier ({n_params:,} parameters, {n_bytes / 1e6:.1f} MB, patch
{args.get('patch_size')}, input {c} x {h} x {w}), pretrained by vivid-med with the objective `{sidecar['objective']}`.

{data}

Files: `config.json` and `model.safetensors` in timm's format (what `timm.models.save_for_hf` writes), this card.

## Load

```python
import timm
model = timm.create_model("local-dir:models/product", pretrained=True).eval()   # or "hf-hub:{repo}"
tokens = model.forward_features(x)   # [B, 1 + N, {config['num_features']}] tokens
features = model(x)                  # [B, {config['num_features']}]: the CLS token, pooled
```

## Input normalisation

`x = (pixel / 255 - {cfg['mean'][0]}) / {cfg['std'][0]}` on each of the {c} channel(s) (`pretrained_cfg`: mean
{list(cfg['mean'])}, std {list(cfg['std'])}, interpolation `{cfg['interpolation']}`, crop_pct {cfg['crop_pct']},
crop_mode `{cfg['crop_mode']}`). timm's transform reproduces vivid-med's `to_tensor` bit for bit on an 8-bit
image of {h} x {w}:

```python
from PIL import Image
cfg = timm.data.resolve_data_config({{}}, model=model)
transform = timm.data.create_transform(**cfg)
x = transform(Image.open("image.png").convert("{'L' if c == 1 else 'RGB'}")).unsqueeze(0)
```

Where it cannot: a larger square image is area-averaged within one grey level of vivid-med's (PIL averages 8-bit
values, vivid-med floats); a non-square image is padded by timm with mid-grey, by vivid-med with black (pad it to
a square with black first, centred); vivid-med enlarges a smaller image bicubically; DICOM, NIfTI and 16-bit
images need vivid-med's decoding first (`read_image`: modality LUT, windowing, min-max).

## Evaluation

{PROBE}. Evaluation data that are SYNTHETIC: {evaluated}.

| metric | mean ± std | protocol |
| --- | --- | --- |
{rows}

## Publish (not run by the pipeline)

```python
from huggingface_hub import HfApi   # needs a write token (`hf auth login`)
api = HfApi()
api.create_repo("{repo}", exist_ok=True)
api.upload_folder(repo_id="{repo}", folder_path="models/product")   # these three files, this card included
```
`timm.models.push_to_hf_hub(model, "{repo}")` also publishes, but rewrites the config from the model and
writes its own card only where the repository has none. Publish only what the data's terms allow (see above).
"""


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="the trained run to ship (params pretrain.export)")
    run = ap.parse_args(argv).run
    src = Path("models") / run
    if not all((src / name).exists() for name in (*TIMM_FILES, SIDECAR)):
        raise FileNotFoundError(f"{src}: no exported backbone (is {run!r} in pretrain.train_runs?)")
    config = json.loads((src / "config.json").read_text())
    sidecar = json.loads((src / SIDECAR).read_text())
    summary = json.loads(Path("metrics/summary.json").read_text())
    pretrain = json.loads((Path("metrics/pretrain") / f"{run}.json").read_text())
    weights = src / "model.safetensors"
    n_params = tensor_count(weights)
    card = model_card(run, config, sidecar, summary, pretrain, n_params, weights.stat().st_size)
    with atomic_dir(OUT) as tmp:
        for name in TIMM_FILES:
            shutil.copy2(src / name, tmp / name)
        failpoint("export:copied")
        (tmp / "README.md").write_text(card)
    print(f"export: models/{run} -> {OUT} ({n_params:,} parameters)")


if __name__ == "__main__":
    main()
