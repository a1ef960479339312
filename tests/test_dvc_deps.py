"""dvc.yaml's code deps cannot drift: each stage lists exactly the project modules its entry module imports.

The closure is read from the source (every ``import`` statement, including those inside functions), so a module
imported lazily still counts; a package imported counts its ``__init__``, and a package that imports all its
modules itself (``pkgutil.iter_modules``, e.g. the objectives) counts them all.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("vivid_med", "stages")


def module_file(name: str) -> Path | None:
    """The file of a project module (``vivid_med.x.y`` -> vivid_med/x/y.py or vivid_med/x/y/__init__.py)."""
    base = REPO.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported_modules(path: Path) -> set[str]:
    """Project modules named by the import statements of ``path`` (absolute and relative; all scopes)."""
    package = ".".join(path.parent.relative_to(REPO).parts)  # what a relative import is relative to
    out: set[str] = set()
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        out |= {n for n in names if n.split(".")[0] in PACKAGES and module_file(n) is not None}
    if "pkgutil.iter_modules" in path.read_text() and path.name == "__init__.py":
        out |= {f"{package}.{p.stem}" for p in path.parent.glob("*.py") if p.name != "__init__.py"}
    return out


def closure(entry: str) -> set[Path]:
    """Files of every project module ``entry`` imports, transitively, with the packages' ``__init__`` files."""
    todo, seen = [entry], set()
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for k in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ first
            prefix = ".".join(parts[:k])
            if prefix not in seen and module_file(prefix) is not None:
                seen.add(prefix)
                todo.extend(imported_modules(module_file(prefix)))
    return {module_file(n).relative_to(REPO) for n in seen}


def stages() -> dict[str, dict]:
    """dvc.yaml's stages (a foreach stage once, by its template)."""
    doc = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    return {name: spec.get("do", spec) for name, spec in doc.items()}


def covered(path: Path, deps: list[str]) -> bool:
    return any(path == Path(d) or Path(d) in path.parents for d in deps)


@pytest.mark.parametrize("name", sorted(stages()))
def test_stage_deps_list_exactly_the_code_it_imports(name):
    spec = stages()[name]
    entry = spec["cmd"].split("-m ", 1)[1].split()[0]
    code = closure(entry)
    deps = [d for d in spec.get("deps", []) if d.split("/")[0] in PACKAGES]
    missing = sorted(str(p) for p in code if not covered(p, deps))
    assert not missing, f"dvc.yaml stage {name}: deps miss {missing}"
    unused = [d for d in deps if not any(covered(p, [d]) for p in code)]
    assert not unused, f"dvc.yaml stage {name}: deps {unused} are code the stage never imports"


def test_the_loss_overlay_names_every_trained_run():
    """Top-level plots take no ${item}: the overlay of training curves lists the runs; it must list train_runs."""
    runs = yaml.safe_load((REPO / "params.yaml").read_text())["pretrain"]["train_runs"]
    plots = yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]
    overlay = next(v for p in plots for k, v in p.items() if k.startswith("Pretraining loss"))
    assert sorted(overlay["y"]) == sorted(f"dvclive/{r}/plots/metrics/loss.tsv" for r in runs)


def test_closure_follows_lazy_and_package_imports():
    pretrain = closure("stages.pretrain")
    assert Path("vivid_med/teacher/cache.py") in pretrain          # imported inside a function
    assert Path("vivid_med/objectives/bce.py") in pretrain         # found by pkgutil in objectives/__init__
    assert Path("vivid_med/__init__.py") in pretrain
    assert Path("vivid_med/evaluate/suite.py") not in pretrain


def stage_deps(entry: str) -> list[str]:
    """What a stage's code deps should read: its closure, a package folder where every module of it is used."""
    files = closure(entry)
    out = []
    for folder in sorted({f.parent for f in files}):
        mine = sorted(f for f in files if f.parent == folder)
        if folder.parts[-1] not in PACKAGES and mine == sorted(p.relative_to(REPO) for p in (REPO / folder).glob("*.py")):
            out.append(str(folder))
        else:
            out += [str(f) for f in mine]
    return out


if __name__ == "__main__":  # print every stage's code deps, to paste into dvc.yaml
    for name, spec in stages().items():
        print(f"{name}:\n" + "".join(f"  - {d}\n" for d in stage_deps(spec["cmd"].split("-m ", 1)[1].split()[0])))
