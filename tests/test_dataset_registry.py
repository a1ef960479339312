"""The dataset registry's contract, for every registered kind: its Options validate a params entry for its fixture,
it builds, it provides what it declares (records -> SourceRows, image_set -> ImageSet) with the documented
columns and shapes, and a wrong option or kind is a ParamsError naming the key. A new kind needs a fixture here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from vivid_med.fields import FIELDS
from vivid_med.params import ParamsError, validate_section
from vivid_med.records import RecordsParams, build_records
from vivid_med.sources import (DATASETS, ImageSet, RecordOptions, SourceRows, kinds, open_dataset,
                               parse_dataset)
from vivid_med.sources.base import SPLITS
from vivid_med.sources.cxr import ROW_COLUMNS
from vivid_med.states import NULL_CODE
from vivid_med.tables import RECORDS_SCHEMA

FX = Path(__file__).parent / "fixtures"


def _pngs(root: Path, n: int) -> list[str]:
    paths = [f"images/{i:03d}.png" for i in range(n)]
    (root / "images").mkdir(parents=True)
    for i, p in enumerate(paths):
        Image.fromarray(np.full((12, 12), 20 * i, np.uint8), mode="L").save(root / p)
    return paths


def _kermany(root: Path) -> dict:
    paths = _pngs(root, 10)
    pd.DataFrame({"path": paths, "label": ["NORMAL", "PNEUMONIA"] * 5,
                  "patient_key": [f"P{i // 2}" for i in range(10)]}).to_csv(root / "labels.csv", index=False)
    return {"size": 8}


def _nih_png(root: Path) -> dict:
    paths = _pngs(root, 10)
    labels = ["No Finding", "Effusion|Mass", "Cardiomegaly", "Hernia", "No Finding"] * 2
    pd.DataFrame({"path": paths, "finding_labels": labels, "patient_id": [str(i) for i in range(10)]}).to_csv(
        root / "labels.csv", index=False)
    return {"size": 8}


def _medmnist(root: Path) -> dict:
    rng = np.random.default_rng(0)
    np.savez(root / "organamnist.npz", **{f"{s}_{k}": (rng.integers(0, 256, (4, 8, 8), dtype=np.uint8) if k == "images"
                                                      else np.arange(4, dtype=np.uint8)[:, None])
                                          for s in SPLITS for k in ("images", "labels")})
    return {"root": str(root / "organamnist.npz")}


def _lidc(root: Path) -> dict:
    from vivid_med.demo.ct import write_lidc

    write_lidc(root, dict(n_patients=4, slices=16, matrix=48), np.random.default_rng(0))
    return {"progress": False, "fractions": [0.5, 0.25, 0.25]}


def _nifti(root: Path) -> dict:
    from vivid_med.demo.ct import write_organ

    write_organ(root, dict(n_per_class=4, image_size=16, n_nifti_cases=1), np.random.default_rng(0))
    return {"root": str(root / "nifti"), "size": 16}


#: kind -> a function that writes (or names) its fixture under a folder and returns the options to use.
FIXTURES: dict[str, Callable[[Path], dict]] = {
    "chexpert": lambda _: {"root": str(FX / "chexpert" / "CheXpert-v1.0-small")},
    "chexpert_plus": lambda _: {"root": str(FX / "chexpert_plus"), "labels": "table"},
    "mimic": lambda _: {"root": str(FX / "mimic"), "labels": "reports"},
    "nih": lambda _: {"root": str(FX / "nih"), "val_fraction": 0.5},
    "openi": lambda _: {"root": str(FX / "openi" / "ecgen")},
    "lidc": _lidc,
    "medmnist": _medmnist,
    "nifti_organs": _nifti,
    "kermany": _kermany,
    "nih_png": _nih_png,
}
#: kind -> an option with a value its Options refuse.
BAD_OPTION: dict[str, tuple[str, object]] = {
    "chexpert": ("val_fraction", 1.5), "chexpert_plus": ("label_section", "history"), "mimic": ("labels", "text"),
    "nih": ("seed", -1), "openi": ("labels", "table"), "lidc": ("rule", "max"), "medmnist": ("name", 3),
    "nifti_organs": ("size", 0), "kermany": ("fractions", [0.5, 0.5, 0.5]), "nih_png": ("size", 0),
}


def test_every_kind_has_a_fixture_and_a_bad_option():
    assert set(FIXTURES) == set(BAD_OPTION) == set(DATASETS.names())
    assert sorted(kinds("records") + kinds("image_set")) == DATASETS.names()  # each kind provides at least one role


@pytest.fixture(params=sorted(FIXTURES))
def spec(request, tmp_path) -> dict:
    kind = request.param
    return {"kind": kind, "root": str(tmp_path), **FIXTURES[kind](tmp_path)}


def test_kind_builds_and_provides_what_it_declares(spec):
    kind = spec["kind"]
    (role,) = DATASETS[kind].roles()
    options = parse_dataset(spec, role, f"test.{kind}")
    assert isinstance(options, DATASETS[kind].Options) and options.kind == kind and options.root == spec["root"]
    dataset = open_dataset(options)
    assert type(dataset) is DATASETS[kind]
    assert hasattr(dataset, "records") == (role == "records") and hasattr(dataset, "image_set") == (role == "image_set")
    if role == "records":
        assert isinstance(options, RecordOptions) and options.labels in ("table", "reports")
        src = dataset.records()
        assert isinstance(src, SourceRows) and src.kind == kind and list(src.frame.columns) == list(ROW_COLUMNS)
        assert (src.frame["row"] >= 1).all() and set(src.frame["split"].dropna()) <= set(SPLITS)
        if options.labels == "table":
            assert src.labels.dtype == np.int8 and src.labels.shape == (len(src.frame), len(FIELDS))
            assert src.labels.min() >= 0 and src.labels.max() <= NULL_CODE
        rec, rej = build_records(src, kind, options.labels, check_images=options.check_images)
        assert list(rec.columns) == RECORDS_SCHEMA.names and len(rec) > 0
        assert len(rec) + len(rej) == len(src.frame)
    else:
        s = dataset.image_set()
        assert isinstance(s, ImageSet) and s.images.dtype == np.uint8 and s.images.ndim == 3 and len(s.images) > 0
        assert len(s.labels) == len(s.patient_ids) == len(s.splits) == len(s.images)
        assert set(s.splits) <= set(SPLITS) and len(s.class_names) > 0
        if s.multilabel:
            assert s.labels.shape == (len(s.images), len(s.class_names)) and s.labels.dtype == np.float32
        else:
            assert s.labels.dtype == np.int64 and 0 <= s.labels.min() and s.labels.max() < len(s.class_names)


def test_wrong_option_is_a_params_error_naming_the_key(spec):
    kind = spec["kind"]
    (role,) = DATASETS[kind].roles()
    where = f"section.{role}s.{kind}"
    key, value = BAD_OPTION[kind]
    with pytest.raises(ParamsError, match=rf"^{where}\.{key}: "):
        parse_dataset({**spec, key: value}, role, where)
    with pytest.raises(ParamsError, match=rf"^{where}\.not_an_option: Extra inputs are not permitted"):
        parse_dataset({**spec, "not_an_option": 1}, role, where)
    with pytest.raises(ParamsError, match=rf"^{where}\.root: Input should be a valid string"):
        parse_dataset({**spec, "root": 5}, role, where)
    other = "image_set" if role == "records" else "records"
    with pytest.raises(ParamsError, match=rf"^{where}\.kind: '{kind}' provides \['{role}'\], not {other}"):
        parse_dataset(spec, other, where)


def test_unknown_or_missing_kind_lists_the_known_kinds():
    with pytest.raises(ParamsError, match=r"x\.kind: unknown dataset kind; records kinds: \['chexpert', "):
        parse_dataset({"kind": "padchest", "root": "/data"}, "records", "x")
    with pytest.raises(ParamsError, match=r"x\.kind: Field required"):
        parse_dataset({"root": "/data"}, "image_set", "x")
    with pytest.raises(ParamsError, match=r"x: expected a mapping"):
        parse_dataset("/data", "image_set", "x")


def test_params_section_validates_every_source_at_its_key():
    """RecordsParams checks each records.sources entry with its kind's Options, errors located at the key."""
    good = {"a": {"kind": "nih", "root": "/data/nih"}, "b": {"kind": "mimic", "root": "/m", "labels": "table"}}
    params = RecordsParams.model_validate({"sources": good, "llm_extractor": None, "report_text": "keep"})
    assert type(params.sources["b"]).__qualname__ == "MimicCxrJpg.Options" and params.sources["b"].labels == "table"
    bad = {**good, "c": {"kind": "lidc", "root": "/l"}, "d": {"kind": "nih", "root": "/n", "seed": "0"}}
    with pytest.raises(ParamsError) as e:
        validate_section(RecordsParams, {"sources": bad, "llm_extractor": None, "report_text": "keep"}, "params.yaml: records")
    lines = str(e.value).splitlines()
    assert lines[0].startswith("params.yaml: records.sources.c.kind: 'lidc' provides ['image_set']")
    assert lines[1] == "params.yaml: records.sources.d.seed: Input should be a valid integer (got '0')"
