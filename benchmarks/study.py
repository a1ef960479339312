"""The seed study (issue #14): does the language teacher matter? Backbones x pretraining seeds, paired statistics.

    make study                      # = python benchmarks/study.py (69 min on 2 CPU cores; resumable)
    python benchmarks/study.py [--work /tmp/vivid_study] [--out metrics/study] [--arms smollm2 minilm] [--tiny]

For each arm of params.study.yaml (a teacher and the backbones trained with it) a scratch copy of the repository
(its git-tracked files) gets params.yaml deep-merged with the arm's profile, train_runs = every backbone x seed
(`<run>_seed<k>`) and the real-data image sets where ../shared/data exists; `dvc repro` runs the whole DAG there.
Rerunning resumes (DVC skips finished stages). Then, on the same test images for every backbone:
- per backbone and protocol: macro-AUC mean and std over pretraining seeds (each seed: the mean over probe seeds);
- per backbone, reference and protocol: the paired patient-level bootstrap of the AUC difference, seeds combined
  (vivid_med.evaluate.paired): difference, 95% interval, share of resamples where the backbone is not better;
- the teacher-semantics check (benchmarks/teacher_semantics.py: prototype geometry vs real NIH co-occurrence).
Writes <out>/study.json, <out>/paired.json, <out>/semantics.json (compact) and <out>/study.md (the tables).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from vivid_med.evaluate.paired import Predictions, compare  # noqa: E402
from vivid_med.params import deep_merge  # noqa: E402
from vivid_med.teacher.semantics import NIH_TABLE  # noqa: E402

SHARED = Path(os.environ.get("VIVID_SHARED_DATA", REPO.parent / "shared" / "data"))  # as tests/conftest.py
#: Tracked files that are this repository's results, not its sources: an arm keeps its own.
OUTPUTS = ("metrics/", "dvclive/")


def sh(cmd: list[str], cwd: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
    subprocess.run(cmd, cwd=cwd, env=env, check=True)


def prepare_arm(arm: str, spec: dict, study: dict, work: Path, tiny: bool = False) -> Path:
    """A scratch copy for ``arm``: this repository's tracked files (refreshed on every run; the outputs are kept, so
    DVC reruns only what changed), params merged; returns its folder."""
    repo = work / arm
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True).stdout
    copied = [rel for rel in filter(None, files.decode().split("\0"))  # not the arm's own state (its lock, results)
              if rel != "dvc.lock" and not rel.startswith(OUTPUTS) and (REPO / rel).is_file()]
    for rel in copied:
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, repo / rel)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    base = params["pretrain"]["runs"]
    runs = {f"{run}_seed{k}": {**base[run], "seed": k} for run in spec["backbones"] for k in study["seeds"]}
    overlay = deep_merge(spec["params"], {"pretrain": {"train_runs": list(runs), "export": next(iter(runs)),
                                                       "runs": runs}})
    if SHARED.is_dir():  # the real-data probes
        sets = {name: {**s, "root": str(SHARED / s["root"])} for name, s in study["real_image_sets"].items()}
        overlay = deep_merge(overlay, {"evaluate": {"image_sets": sets}})
    if tiny:  # a smoke test of the study itself: the tiny profile's sizes
        params = deep_merge(params, yaml.safe_load((REPO / "params.tiny.yaml").read_text()))
    params = deep_merge(params, overlay)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.rmtree(repo / ".git", ignore_errors=True)  # a fresh history of the tracked files only (never outputs)
    sh(["git", "init", "-q"], repo)
    subprocess.run(["git", "add", "--pathspec-from-file=-", "--pathspec-file-nul"], cwd=repo,
                   input="\0".join(copied).encode(), check=True)
    sh(["git", "-c", "user.name=study", "-c", "user.email=s@s", "commit", "-qm", "study arm"], repo)
    return repo


def load_predictions(repo: Path, run: str, protocol: str) -> Predictions | None:
    path = repo / "data" / "features" / run / "predictions" / f"{protocol}.npz"
    if not path.exists():
        return None
    with np.load(path) as z:
        return Predictions(z["labels"], z["patient_ids"], z["scores"])


def headline_auc(repo: Path, run: str, protocol: str) -> float | None:
    """The mean AUC over probe seeds of one run on one protocol (metrics/eval/<run>.json); None if not evaluated."""
    path = repo / "metrics" / "eval" / f"{run}.json"
    if not path.is_file():
        return None
    m = json.loads(path.read_text())
    section = {"chexpert_standard_pct1": m["chexpert_standard"].get("pct1", {})}.get(protocol, m.get(protocol, {}))
    return (section.get("auc") or {}).get("mean")


def collect(arms: dict[str, Path], study: dict) -> tuple[dict, dict]:
    """(per backbone per protocol: per-seed AUCs and mean/std; per backbone per protocol: seeds' Predictions)."""
    table, preds = {}, {}
    for arm, repo in arms.items():
        backbones = study["arms"][arm]["backbones"]
        names = backbones if isinstance(backbones, dict) else {b: b for b in backbones}
        for run, name in names.items():
            table[name], preds[name] = {}, {}
            for protocol in study["protocols"]:
                seeds = [f"{run}_seed{k}" for k in study["seeds"]]
                aucs = [headline_auc(repo, s, protocol) for s in seeds]
                if any(a is None for a in aucs):
                    continue
                table[name][protocol] = {"seeds": aucs, "mean": float(np.mean(aucs)), "std": float(np.std(aucs, ddof=1))}
                parts = [load_predictions(repo, s, protocol) for s in seeds]
                if all(p is not None for p in parts):
                    preds[name][protocol] = Predictions(parts[0].labels, parts[0].patient_ids,
                                                        np.concatenate([p.scores for p in parts]))
    return table, preds


def paired(preds: dict, study: dict) -> dict:
    boot = study["bootstrap"]
    out, done = {}, set()
    for ref in study["references"]:
        for name in preds:
            if name == ref or frozenset((name, ref)) in done:  # each pair once, against the earlier reference
                continue
            done.add(frozenset((name, ref)))
            for protocol in study["protocols"]:
                a, b = preds[name].get(protocol), preds.get(ref, {}).get(protocol)
                if a is not None and b is not None:
                    out[f"{name} - {ref} | {protocol}"] = compare(a, b, boot["resamples"], boot["seed"])
    return out


def semantics(out: Path, arms: dict[str, Path]) -> dict:
    """The teacher-semantics benchmark (SmolLM2 / MiniLM vs random weights, against NIH co-occurrence), compacted
    to the params layer, the best layer and the mean over layers per teacher and vector. SmolLM2's converted
    weights are taken from an arm that built them (its teacher_weights stage)."""
    nih = SHARED / NIH_TABLE  # the same folder as the real-data probes ($VIVID_SHARED_DATA), not the script's default
    if not nih.parent.is_dir():
        return {"skipped": f"{nih.parent} is absent"}
    built = [repo / "models/teacher/smollm2" for repo in arms.values() if (repo / "models/teacher/smollm2").is_dir()]
    full = out / "semantics_full.json"
    sh([sys.executable, str(REPO / "benchmarks" / "teacher_semantics.py"), "--out", str(full),
        "--plot", str(out / "semantics.png"), "--nih", str(nih),
        *(["--smollm2", str(built[0])] if built else [])], REPO)
    data = json.loads(full.read_text())
    full.unlink()
    return {k: data[k] for k in ("meta", "reference", "summary")}  # every row (684 of them): rerun the benchmark


def markdown(table: dict, comparisons: dict, study: dict) -> str:
    protocols = study["protocols"]
    lines = ["# Seed study (SYNTHETIC demo cohort for the CheXpert-style protocols; real images for kermany and "
             "pneumoniamnist)", "", f"Pretraining seeds {study['seeds']}; per seed the mean over probe seeds. "
             "Macro AUC mean +- std over pretraining seeds.", "",
             "| backbone | " + " | ".join(protocols) + " |", "|---|" + "---|" * len(protocols)]
    for name, row in table.items():
        cells = [f"{row[p]['mean']:.3f} +- {row[p]['std']:.3f}" if p in row else "n/a" for p in protocols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Paired differences (backbone - reference), test patients resampled (2,000 times), the same images "
              "for both, every pretraining x probe seed in each resample; 95% percentile interval; p = share of "
              "resamples where the backbone is not better.", "",
              "| comparison | protocol | difference | 95% interval | p |", "|---|---|---|---|---|"]
    for key, r in comparisons.items():
        pair, protocol = key.split(" | ")
        lines.append(f"| {pair} | {protocol} | {r['difference']:+.3f} | [{r['ci95'][0]:+.3f}, {r['ci95'][1]:+.3f}] | "
                     f"{r['p_a_not_better']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/vivid_study"))
    ap.add_argument("--out", type=Path, default=REPO / "metrics" / "study")
    ap.add_argument("--arms", nargs="+")
    ap.add_argument("--tiny", action="store_true", help="the tiny profile's sizes: a smoke test of the study")
    ap.add_argument("--collect-only", action="store_true",
                    help="no dvc repro: tabulate the runs already evaluated in --work (a backbone with a seed missing "
                         "is left out of that protocol)")
    ap.add_argument("--keep-semantics", action="store_true",
                    help="do not rerun the teacher-semantics check: keep <out>/semantics.json as it is")
    args = ap.parse_args()
    study = yaml.safe_load((REPO / "params.study.yaml").read_text())
    arms, timing = {}, {}
    for arm in args.arms or list(study["arms"]):
        if args.collect_only:
            arms[arm] = args.work / arm
            continue
        repo = prepare_arm(arm, study["arms"][arm], study, args.work, args.tiny)
        t0 = time.time()
        for run in study["arms"][arm]["backbones"]:  # backbone by backbone: a stopped study has whole backbones
            sh([sys.executable, "-m", "dvc", "repro", *(f"evaluate@{run}_seed{k}" for k in study["seeds"])], repo)
        sh([sys.executable, "-m", "dvc", "repro"], repo)
        arms[arm], timing[arm] = repo, round(time.time() - t0)
    table, preds = collect(arms, study)
    comparisons = paired(preds, study)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "study.json").write_text(json.dumps({"seeds": study["seeds"], "backbones": table}, indent=1) + "\n")
    (args.out / "paired.json").write_text(json.dumps(comparisons, indent=1) + "\n")
    if not (args.keep_semantics and (args.out / "semantics.json").is_file()):
        (args.out / "semantics.json").write_text(json.dumps(semantics(args.out, arms), indent=1) + "\n")
    (args.out / "study.md").write_text(markdown(table, comparisons, study))
    print(markdown(table, comparisons, study))
    print(f"wall time per arm (s): {timing}")


if __name__ == "__main__":
    main()
