"""Stage ``export``: the product backbone (``pretrain.export``, passed by dvc.yaml) alone, with a model card, in
models/product/.

The card states what the backbone is, how to load it in one line of timm, and the evaluation row it earned.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

OUT = Path("models/product")


def model_card(run: str, config: dict, summary: dict) -> str:
    """Markdown card: architecture, size, the one-line load, and the summary row of ``run``."""
    row = summary["backbones"].get(run) or {}
    cells = "\n".join(f"| {k} | {v['mean']:.4f} +- {v['std']:.4f} |" if isinstance(v, dict) and v.get("mean") is not None
                      else f"| {k} | n/a |" for k, v in row.items())
    data = ", ".join(summary.get("synthetic_data", [])) or "none"
    return f"""# vivid-med backbone `{run}`

A timm `{config['model']}` ({config['n_params']:,} parameters, {config['bytes'] / 1e6:.1f} MB), input
{config['in_chans']} x {config['img_size']} x {config['img_size']}, normalised as (x / 255 - 0.5) / 0.25.
Pretraining objective: `{config['objective']}`. Synthetic training/evaluation data: {data}.

```python
import json, timm
m = timm.create_model(**json.load(open("config.json"))["timm"], checkpoint_path="backbone.safetensors")
```

| metric (mean +- std over probe seeds) | value |
| --- | --- |
{cells}
"""


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="the trained run to ship (params pretrain.export)")
    run = ap.parse_args(argv).run
    src = Path("models") / run
    if not (src / "backbone.safetensors").exists():
        raise FileNotFoundError(f"{src}: no exported backbone (is {run!r} in pretrain.train_runs?)")
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    for name in ("backbone.safetensors", "config.json"):
        shutil.copy2(src / name, OUT / name)
    config = json.loads((src / "config.json").read_text())
    summary = json.loads(Path("metrics/summary.json").read_text())
    (OUT / "MODEL_CARD.md").write_text(model_card(run, config, summary))
    print(f"export: models/{run} -> {OUT} ({config['n_params']:,} parameters)")


if __name__ == "__main__":
    main()
