"""The synthetic CT writers (LIDC layout, OrganAMNIST npz + NIfTI) and the NIfTI organ adapter."""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest

from vivid_med.demo.ct import write_lidc, write_organ
from vivid_med.sources.base import ImageSet
from vivid_med.sources.ct import ORGAN_CLASSES
from vivid_med.sources.lidc import CHARACTERISTICS, NS
from vivid_med.sources.nifti_organs import NiftiOrgans

LIDC_CFG = dict(n_patients=3, slices=16, matrix=64)
ORGAN_CFG = dict(n_per_class=10, image_size=32, n_nifti_cases=2)


def load_nifti_organs(root: Path, **options) -> ImageSet:
    return NiftiOrgans.at(root, **options).image_set()


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def lidc(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lidc")
    write_lidc(root, LIDC_CFG, np.random.default_rng(0))
    return root


@pytest.fixture(scope="module")
def organ(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("organ")
    write_organ(root, ORGAN_CFG, np.random.default_rng(0))
    return root


def test_lidc_same_seed_same_bytes(lidc, tmp_path):
    write_lidc(tmp_path, LIDC_CFG, np.random.default_rng(0))
    assert _digest(tmp_path) == _digest(lidc)
    other = tmp_path / "other"
    write_lidc(other, LIDC_CFG, np.random.default_rng(1))
    assert _digest(other) != _digest(lidc)


def test_lidc_dicom_series(lidc):
    series = sorted(p for p in lidc.glob("LIDC-IDRI-*/*/*") if p.is_dir())
    assert len(series) == LIDC_CFG["n_patients"]
    folder = series[0]
    files = sorted(folder.glob("*.dcm"))
    assert len(files) == LIDC_CFG["slices"]
    ds = pydicom.dcmread(files[0])
    assert ds.Modality == "CT" and ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert folder.name == ds.SeriesInstanceUID and folder.parent.name == ds.StudyInstanceUID
    assert ds.PatientID == folder.parent.parent.name and ds.PixelRepresentation == 1
    assert ds.pixel_array.dtype == np.int16 and ds.pixel_array.shape == (64, 64)
    hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert hu[0, 0] < -900                                  # air outside the body
    assert -950 < np.median(hu[30:34, 16:20]) < -750        # right lung
    assert float(ds.SliceLocation) == float(ds.ImagePositionPatient[2])
    zs = [float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]) for f in files]
    assert np.allclose(np.diff(zs), -float(ds.SliceThickness))
    assert len({pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files}) == len(files)


def test_lidc_readers_xml(lidc):
    folder = sorted(p for p in lidc.glob("LIDC-IDRI-*/*/*") if p.is_dir())[0]
    (xml,) = folder.glob("*.xml")
    root = ET.parse(xml).getroot()
    assert root.tag == f"{{{NS}}}LidcReadMessage"
    assert root.findtext(f"{{{NS}}}ResponseHeader/{{{NS}}}SeriesInstanceUid") == folder.name
    assert root.findtext(f"{{{NS}}}ResponseHeader/{{{NS}}}StudyInstanceUID") == folder.parent.name
    sessions = root.findall(f"{{{NS}}}readingSession")
    assert 3 <= len(sessions) <= 4
    sop_of_z = {}
    for f in folder.glob("*.dcm"):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        sop_of_z[f"{float(ds.ImagePositionPatient[2]):.2f}"] = ds.SOPInstanceUID
    n_rois = 0
    for nod in root.iter(f"{{{NS}}}unblindedReadNodule"):
        chars = nod.find(f"{{{NS}}}characteristics")
        assert [c.tag.split("}")[1] for c in chars] == list(CHARACTERISTICS)
        assert all(1 <= int(c.text) <= 6 for c in chars)
        for roi in nod.findall(f"{{{NS}}}roi"):
            z = roi.findtext(f"{{{NS}}}imageZposition")
            assert sop_of_z[f"{float(z):.2f}"] == roi.findtext(f"{{{NS}}}imageSOP_UID")
            assert roi.findtext(f"{{{NS}}}inclusion") == "TRUE"
            assert roi.findall(f"{{{NS}}}edgeMap/{{{NS}}}xCoord")
            n_rois += 1
    assert n_rois > 0


def test_lidc_malignant_larger_and_rated_higher(tmp_path):
    write_lidc(tmp_path, dict(n_patients=12, slices=16, matrix=48), np.random.default_rng(3))
    truth = pd.read_csv(tmp_path / "truth.csv")
    size = truth.groupby("kind").diameter_mm.mean()
    assert size["malignant"] > 1.5 * size["benign"]
    ratings = {"benign": [], "malignant": []}
    for xml in tmp_path.rglob("*.xml"):
        for nod in ET.parse(xml).getroot().iter(f"{{{NS}}}unblindedReadNodule"):
            spic = int(nod.findtext(f"{{{NS}}}characteristics/{{{NS}}}spiculation"))
            mal = int(nod.findtext(f"{{{NS}}}characteristics/{{{NS}}}malignancy"))
            ratings["malignant" if mal >= 4 else "benign"].append(spic)
    assert np.mean(ratings["malignant"]) > np.mean(ratings["benign"]) + 0.5


def test_organ_npz_keys_and_balance(organ):
    with np.load(organ / "organamnist.npz") as npz:
        assert sorted(npz.files) == sorted(f"{s}_{k}" for s in ("train", "val", "test") for k in ("images", "labels"))
        labels = np.concatenate([npz[f"{s}_labels"] for s in ("train", "val", "test")])
        assert npz["train_images"].dtype == np.uint8 and npz["train_images"].shape[1:] == (32, 32)
        assert npz["train_labels"].shape[1] == 1
    assert np.bincount(labels[:, 0]).tolist() == [ORGAN_CFG["n_per_class"]] * 11


def test_organ_nifti_pairs_anatomy(organ):
    img = nib.load(organ / "nifti" / "case_000_image.nii.gz")
    lab = nib.load(organ / "nifti" / "case_000_label.nii.gz")
    assert np.allclose(img.affine, lab.affine) and img.shape == lab.shape
    assert img.get_data_dtype() == np.int16 and lab.get_data_dtype() == np.uint8
    labels = np.asanyarray(lab.dataobj)
    assert set(np.unique(labels)) == set(range(12))

    def world(name: str) -> np.ndarray:
        ijk = np.argwhere(labels == ORGAN_CLASSES.index(name) + 1).mean(0)
        return lab.affine[:3, :3] @ ijk + lab.affine[:3, 3]

    assert world("kidney-left")[0] < world("kidney-right")[0]   # RAS+: patient's left has smaller x
    assert world("liver")[0] > world("spleen")[0]               # liver on the patient's right
    assert world("lung-left")[2] > world("bladder")[2]          # lungs above the bladder
    hu = np.asanyarray(img.dataobj)
    assert np.median(hu[labels == ORGAN_CLASSES.index("lung-left") + 1]) < -700


def test_nifti_organs_adapter(organ):
    s = load_nifti_organs(organ / "nifti", size=32)
    assert s.images.shape == (2 * 11, 32, 32) and s.images.dtype == np.uint8
    assert sorted(s.labels.tolist()) == sorted(list(range(11)) * 2)
    assert set(s.patient_ids) == {"case_000", "case_001"}
    femur = s.images[s.labels == ORGAN_CLASSES.index("femur-left")]
    lung = s.images[s.labels == ORGAN_CLASSES.index("lung-left")]
    assert femur.mean() > lung.mean() + 40                      # bone bright, lung dark in W400/L40


def test_nifti_organs_mismatch_errors(organ, tmp_path):
    img = nib.load(organ / "nifti" / "case_000_image.nii.gz")
    lab = nib.load(organ / "nifti" / "case_000_label.nii.gz")
    nib.save(img, tmp_path / "a_image.nii.gz")
    shifted = lab.affine.copy()
    shifted[0, 3] += 10
    nib.save(nib.Nifti1Image(np.asanyarray(lab.dataobj), shifted), tmp_path / "a_label.nii.gz")
    with pytest.raises(ValueError, match="a_image.nii.gz and .*a_label.nii.gz: affines differ"):
        load_nifti_organs(tmp_path)
    nib.save(nib.Nifti1Image(np.asanyarray(lab.dataobj)[:, :, :-1], lab.affine), tmp_path / "a_label.nii.gz")
    with pytest.raises(ValueError, match="shape"):
        load_nifti_organs(tmp_path)
    (tmp_path / "a_label.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match="a_label.nii.gz"):
        load_nifti_organs(tmp_path)


def test_organ_same_seed_same_bytes(organ, tmp_path):
    write_organ(tmp_path, ORGAN_CFG, np.random.default_rng(0))
    assert _digest(tmp_path) == _digest(organ)
