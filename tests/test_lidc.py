"""The LIDC-IDRI adapter, on series written in the TCIA layout by the demo and on hand-made XML."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vivid_med.demo.ct import write_lidc
from vivid_med.sources.ct import patient_split_map
from vivid_med.sources.lidc import (
    Annotation, LidcData, LidcIdri, NotCtReadError, cluster_annotations, malignancy_label, parse_read_message,
    read_series,
)

CFG = dict(n_patients=6, slices=16, matrix=64)


def load_lidc(root: Path, **options) -> LidcData:
    return LidcIdri.at(root, **options).read()


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lidc")
    write_lidc(root, CFG, np.random.default_rng(0))
    return root


@pytest.fixture
def copy(demo, tmp_path) -> Path:
    return Path(shutil.copytree(demo, tmp_path / "lidc"))


def _series(root: Path, patient: str) -> Path:
    (folder,) = [p for p in (root / patient).glob("*/*") if p.is_dir()]
    return folder


def test_load_demo(demo):
    d = load_lidc(demo, progress=False)
    s = d.images
    assert s.images.dtype == np.uint8 and s.images.shape[1:] == (64, 64)
    assert set(s.labels.tolist()) == {0, 1} and s.class_names == ("benign", "malignant")
    assert len(s.images) == d.nodules.label.notna().sum() and d.rejects.empty
    truth = pd.read_csv(demo / "truth.csv")
    agree, n = 0, 0
    for _, row in d.nodules.iterrows():        # each physical nodule matches one true nodule
        t = truth[truth.patient_id == row.patient_id]
        dist = np.hypot(t.x - row.x, t.y - row.y)
        best = t.iloc[int(np.argmin(dist))]
        assert dist.min() < 3 and abs(best.z - row.slice_z) <= 2.5
        if not np.isnan(row.label) and best.kind != "indeterminate":
            agree += int(row.label == (best.kind == "malignant"))
            n += 1
    assert n >= 5 and agree / n >= 0.8
    centre, border = s.images[:, 26:38, 26:38].mean(), s.images[:, :8, :8].mean()
    assert centre > border                      # crops are centred on the (dense) nodule


def test_same_seed_same_split_and_patient_level(demo):
    a, b = load_lidc(demo, progress=False, seed=0), load_lidc(demo, progress=False, seed=0)
    assert (a.images.splits == b.images.splits).all() and np.array_equal(a.images.images, b.images.images)
    split = patient_split_map([f"p{i}" for i in range(100)], (0.7, 0.2, 0.1), seed=1)
    assert sorted(pd.Series(split).value_counts().tolist()) == [10, 20, 70]
    assert split != patient_split_map([f"p{i}" for i in range(100)], (0.7, 0.2, 0.1), seed=2)
    with pytest.raises(ValueError, match="fractions"):
        patient_split_map(["a"], (0.7, 0.2), 0)


def test_malignancy_rules():
    assert malignancy_label([1, 2, 3], "mean") == 0 and malignancy_label([2, 3, 4], "mean") is None
    assert malignancy_label([4, 4, 5, 3], "mean") == 1
    assert malignancy_label([2, 2, 5], "median") == 0 and malignancy_label([3, 4, 5, 1], "mean") is None
    assert malignancy_label([3, 4, 4], "median") == 1 and malignancy_label([3, 3, 5], "median") is None
    with pytest.raises(ValueError, match="rule"):
        malignancy_label([1], "max")


def _ann(reader: int, x: float, y: float, z: float) -> Annotation:
    pts = np.array([[x - 1, y], [x + 1, y], [x, y - 1], [x, y + 1]])
    return Annotation("f.xml", reader, f"n{reader}", {"malignancy": 3}, np.array([z]), [pts])


def test_cluster_by_centroid_distance():
    anns = [_ann(0, 10, 10, 0), _ann(1, 11, 10, 1), _ann(2, 40, 40, 0), _ann(3, 10, 10, 30)]
    groups = cluster_annotations(anns, spacing=1.0, tol_mm=5.0)
    assert sorted(sorted(a.reader for a in g) for g in groups) == [[0, 1], [2], [3]]


NS_ATTR = 'xmlns="http://www.nih.gov"'


def _xml(body: str, root: str = "LidcReadMessage") -> str:
    return textwrap.dedent(f"""\
        <?xml version="1.0" encoding="UTF-8"?>
        <{root} uid="1.2.3" {NS_ATTR}>
          <ResponseHeader><Version>1.8.1</Version><SeriesInstanceUid>1.2.3.4</SeriesInstanceUid>
            <StudyInstanceUID>1.2.3</StudyInstanceUID></ResponseHeader>
          {body}
        </{root}>""")


def test_parse_hand_made_read_message(tmp_path):
    chars = "".join(f"<{c}>{v}</{c}>" for c, v in zip(
        ("subtlety", "internalStructure", "calcification", "sphericity", "margin", "lobulation",
         "spiculation", "texture", "malignancy"), (5, 1, 6, 3, 2, 4, 5, 5, 5)))
    roi = ("<roi><imageZposition>-12.5</imageZposition><imageSOP_UID>1.9</imageSOP_UID><inclusion>TRUE</inclusion>"
           "<edgeMap><xCoord>10</xCoord><yCoord>20</yCoord></edgeMap>"
           "<edgeMap><xCoord>12</xCoord><yCoord>22</yCoord></edgeMap></roi>")
    body = (f"<readingSession><servicingRadiologistID>a</servicingRadiologistID>"
            f"<unblindedReadNodule><noduleID>big</noduleID><characteristics>{chars}</characteristics>{roi}"
            f"</unblindedReadNodule>"
            f"<unblindedReadNodule><noduleID>small</noduleID>{roi}</unblindedReadNodule>"
            f"<nonNodule><nonNoduleID>x</nonNoduleID><imageZposition>-12.5</imageZposition>"
            f"<locus><xCoord>1</xCoord><yCoord>1</yCoord></locus></nonNodule></readingSession>"
            f"<readingSession><unblindedReadNodule><noduleID>blank</noduleID>"
            f"<characteristics>{chars.replace('<malignancy>5', '<malignancy>')}</characteristics>{roi}"
            f"</unblindedReadNodule></readingSession>")
    path = tmp_path / "069.xml"
    path.write_text(_xml(body))
    uid, anns, skipped = parse_read_message(path)
    assert uid == "1.2.3.4" and len(anns) == 1
    a = anns[0]
    assert a.nodule_id == "big" and a.scores["malignancy"] == 5 and a.scores["lobulation"] == 4
    assert a.z.tolist() == [-12.5] and np.allclose(a.centroid(0.5), [5.5, 10.5, -12.5])
    assert [(r["row"], r["reason"]) for r in skipped] == [
        ("reader 0 nodule small", "small_nodule"), ("reader 1 nodule blank", "incomplete_characteristics")]
    path.write_text(_xml("", root="IdriReadMessage"))
    with pytest.raises(NotCtReadError, match="069.xml.*not a CT read"):
        parse_read_message(path)


def test_missing_slice_is_rejected(copy):
    folder = _series(copy, "LIDC-IDRI-0002")
    sorted(folder.glob("*.dcm"))[7].unlink()
    with pytest.raises(ValueError, match="missing slice"):
        read_series(folder)
    d = load_lidc(copy, progress=False)
    (rej,) = d.rejects.itertuples()
    assert rej.reason == "bad_series" and rej.source_file == str(folder) and "z jumps" in rej.detail
    assert "LIDC-IDRI-0002" not in set(d.nodules.patient_id)
    assert {"LIDC-IDRI-0001", "LIDC-IDRI-0004"} <= set(d.nodules.patient_id)


def test_malformed_xml_is_rejected(copy):
    (xml,) = _series(copy, "LIDC-IDRI-0001").glob("*.xml")
    xml.write_text(xml.read_text()[:-200])
    d = load_lidc(copy, progress=False)
    (rej,) = d.rejects.itertuples()
    assert rej.reason == "bad_xml" and rej.source_file == str(xml) and "malformed XML" in rej.detail
    assert "LIDC-IDRI-0001" not in set(d.nodules.patient_id)


def test_nodule_outside_volume_is_rejected(copy):
    (xml,) = _series(copy, "LIDC-IDRI-0004").glob("*.xml")
    text = xml.read_text()
    first = text.index("<imageZposition>")
    end = text.index("</imageZposition>", first)
    xml.write_text(text[:first] + "<imageZposition>999.00" + text[end:])
    text = xml.read_text()
    last = text.rindex("<xCoord>")
    xml.write_text(text[:last] + "<xCoord>640" + text[text.index("</xCoord>", last):])
    d = load_lidc(copy, progress=False)
    assert d.rejects.reason.tolist() == ["outside_volume", "outside_volume"]
    assert set(d.rejects.source_file) == {str(xml)}
    assert "999.00 mm is not a slice" in d.rejects.detail.iloc[0] and "outside the 64x64" in d.rejects.detail.iloc[1]


def test_no_series_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="LIDC-IDRI layout"):
        load_lidc(tmp_path, progress=False)


def test_ums_records(demo):
    from vivid_med.sources.lidc import ums_records
    from vivid_med.ums import target_text

    d = load_lidc(demo, progress=False)
    records = ums_records(d.nodules)
    assert len(records) == len(d.nodules) and all(r.modality == "CT" and r.anatomy == "chest" for r in records)
    states = [r.ct_findings.nodule_malignancy for r in records]
    assert states == [None if np.isnan(v) else ("benign", "malignant")[int(v)] for v in d.nodules.label]
    assert '"Nodule Malignancy"' in target_text(records[0], ["nodule_malignancy"])
    assert records[0].provenance.label_file.endswith(".xml")
