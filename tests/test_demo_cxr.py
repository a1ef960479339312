"""The synthetic CXR renderer: determinism, styles, and findings measurable at 64 px.

Each signature test renders ~40 positives and ~40 negatives (independent patients, the other findings off),
downsamples 128 -> 64 px (area average, as the images stage does) and checks that one simple hand-made
measurement separates them (ROC AUC > 0.8 on MIMIC_STYLE). Not in that list are the findings considered
hard or invisible at 64 px: fracture (a rib step; ribs lie about 4 px apart) and pleural_other (thin lateral
pleural thickening).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
from scipy.ndimage import median_filter
from sklearn.metrics import roc_auc_score

from vivid_med.demo.cxr import MIMIC_STYLE, NIH_STYLE, VIEWS, render_cxr
from vivid_med.fields import FIELDS

N = 40


def _render64(findings: dict[str, bool], seed: int, style=MIMIC_STYLE) -> np.ndarray:
    img = render_cxr(findings, np.random.default_rng(seed), 128, style).astype(np.float32)
    return img.reshape(64, 2, 64, 2).mean(axis=(1, 3))


@lru_cache(maxsize=None)
def _healthy64(seed: int) -> np.ndarray:
    """A negative: no finding (shared by every signature test)."""
    return _render64({}, seed)


def _box(img: np.ndarray, rows: tuple[float, float], cols: tuple[float, float]) -> np.ndarray:
    s = img.shape[0]
    return img[int(rows[0] * s):int(rows[1] * s), int(cols[0] * s):int(cols[1] * s)]


def _sides(img, rows, cols):
    """The same box on both sides (cols given for the image-left lung)."""
    return _box(img, rows, cols), _box(img, rows, (1 - cols[1], 1 - cols[0]))


def heart_width(img):
    """Fraction of bright pixels along rows at heart level, inside the thorax."""
    band = _box(img, (0.5, 0.66), (0.12, 0.88))
    lung, tissue = np.percentile(img[10:50, 8:56], 10), np.percentile(img[58:, :], 50)
    return (band > 0.5 * (lung + tissue)).mean()


def mediastinal_width(img):
    band = _box(img, (0.2, 0.36), (0.25, 0.75))
    lung, tissue = np.percentile(img[10:50, 8:56], 10), np.percentile(img[58:, :], 50)
    return (band > 0.5 * (lung + tissue)).mean()


def _threshold(img):
    """Midway between aerated lung and soft tissue (abdomen), per image."""
    return 0.5 * (np.percentile(img[10:50, 8:56], 10) + np.percentile(img[58:, :], 50))


def costophrenic(img):
    """Aerated fraction of the lower lateral lung corners, the lower side (negated)."""
    return -min((b < _threshold(img)).mean() for b in _sides(img, (0.5, 0.8), (0.08, 0.25)))


def aerated(img):
    """Aerated fraction of the lung fields, the less aerated side (negated)."""
    return -min((b < _threshold(img)).mean() for b in _sides(img, (0.15, 0.75), (0.1, 0.45)))


def nodule_contrast(img):
    lungs = _box(img, (0.15, 0.65), (0.1, 0.9))
    return (lungs - median_filter(lungs, 7)).max()


def lucency(img):
    """How far the darkest 2% of the chest lie below the lung's median (a lucent rim without markings)."""
    chest = _box(img, (0.12, 0.7), (0.06, 0.94))
    return np.median(_box(img, (0.25, 0.55), (0.2, 0.8))) - np.percentile(chest, 2)


def metal(img):
    return np.percentile(_box(img, (0.0, 0.7), (0.15, 0.85)), 99.5)


def perihilar(img):
    hil = _sides(img, (0.28, 0.48), (0.25, 0.4))
    per = _sides(img, (0.2, 0.35), (0.1, 0.2))
    return hil[0].mean() + hil[1].mean() - per[0].mean() - per[1].mean()


SIGNATURES = {
    "cardiomegaly": heart_width,
    "enlarged_cardiomediastinum": mediastinal_width,
    "pleural_effusion": costophrenic,
    "lung_lesion": nodule_contrast,
    "pneumothorax": lucency,
    "support_devices": metal,
    "consolidation": aerated,
    "pneumonia": aerated,
    "lung_opacity": aerated,
    "atelectasis": aerated,
    "edema": perihilar,
}


@pytest.mark.parametrize("finding", list(SIGNATURES))
def test_signature_separates_at_64px(finding):
    measure = SIGNATURES[finding]
    pos = [measure(_render64({finding: True}, 1000 + i)) for i in range(N)]
    neg = [measure(_healthy64(2000 + i)) for i in range(N)]
    auc = roc_auc_score([1] * N + [0] * N, pos + neg)
    assert auc > 0.8, f"{finding}: AUC {auc:.3f}"


def test_deterministic_bytes():
    f = {"cardiomegaly": True, "support_devices": True, "pleural_effusion": True}
    for view in VIEWS:
        a = render_cxr(f, np.random.default_rng(7), 96, MIMIC_STYLE, view)
        b = render_cxr(f, np.random.default_rng(7), 96, MIMIC_STYLE, view)
        assert a.dtype == np.uint8 and a.shape == (96, 96)
        assert a.tobytes() == b.tobytes()
    assert not np.array_equal(render_cxr(f, np.random.default_rng(8), 96, MIMIC_STYLE), a)


def test_toggling_a_finding_keeps_the_patient():
    """Parameters are drawn whether or not a finding is present: a nodule changes only a small area."""
    off = render_cxr({"lung_lesion": False}, np.random.default_rng(3), 128, MIMIC_STYLE).astype(int)
    on = render_cxr({"lung_lesion": True}, np.random.default_rng(3), 128, MIMIC_STYLE).astype(int)
    changed = np.abs(on - off) > 8
    assert 0 < changed.mean() < 0.03


def test_styles_are_a_domain_shift():
    mimic = np.stack([_render64({}, i, MIMIC_STYLE) for i in range(10)])
    nih = np.stack([_render64({}, i, NIH_STYLE) for i in range(10)])
    assert abs(mimic.mean() - nih.mean()) > 10
    rough = lambda x: np.abs(np.diff(x, axis=-1)).mean()  # noqa: E731
    assert rough(nih) != pytest.approx(rough(mimic), rel=0.1)


def test_every_field_renders_and_bad_input_is_refused():
    every = {f: True for f in FIELDS}
    for view in VIEWS:
        img = render_cxr(every, np.random.default_rng(0), 64, NIH_STYLE, view)
        assert img.shape == (64, 64) and img.std() > 10
    with pytest.raises(ValueError, match="unknown finding"):
        render_cxr({"pneumonitis": True}, np.random.default_rng(0), 64, MIMIC_STYLE)
    with pytest.raises(ValueError, match="unknown view"):
        render_cxr({}, np.random.default_rng(0), 64, MIMIC_STYLE, view="OBLIQUE")
