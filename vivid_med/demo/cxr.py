"""Synthetic chest X-ray-like images: a deterministic, vectorised numpy renderer.

``render_cxr(findings, rng, size, style, view)`` composes a density map from soft anatomy (body, lungs,
heart, mediastinum, spine, clavicles, ribs, lung markings) and the findings of ``vivid_med.fields``, then
exposes it with a ``CXRStyle`` (exposure, contrast, gamma, detector blur, noise, collimation): the style is
the "site", so ``MIMIC_STYLE`` vs ``NIH_STYLE`` is a domain shift. Anatomy varies per image (patient size,
thorax width, rotation, shift, inspiration, heart size, mediastinal width). All randomness comes from
``rng``, and every parameter is drawn whether or not its finding is present: the same seed with one finding
toggled renders the same patient with and without it.

Visibility at 64 px (the images stage's default store size, rendered at 128 and downsampled):
visible (tests/test_demo_cxr.py separates them with one hand-made measurement, AUC > 0.8): cardiomegaly,
enlarged cardiomediastinum, pleural effusion, lung lesion (nodules of 1.5-2.5 px radius), pneumothorax (a
lucent rim without markings), support devices, consolidation, pneumonia, lung opacity, atelectasis (band or
wedge + volume loss), edema; hard/near invisible: fracture (a rib step over ribs about 4 px apart) and
pleural other (thin lateral pleural thickening).
The lateral view is a simpler rendering that draws only cardiomegaly, effusion (posterior sulcus), lung
opacity, consolidation, pneumonia, edema, lung lesion and support devices.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.ndimage import gaussian_filter

from vivid_med.demo import cxr_findings as F
from vivid_med.fields import check_fields

VIEWS: tuple[str, ...] = ("PA", "AP", "LATERAL")


@dataclass(frozen=True)
class CXRStyle:
    """How a site exposes and digitises films (all intensities are fractions of full scale)."""

    exposure: float = 0.5        # grey level of density 0.35 (between lung and soft tissue)
    contrast: float = 1.0        # grey levels per unit density
    gamma: float = 1.0           # display gamma applied after exposure
    noise: float = 0.015         # Gaussian noise sigma
    grain: float = 0.0           # correlated (film grain) noise sigma
    blur: float = 0.003          # detector blur: Gaussian sigma as a fraction of the image size
    collimation: float = 0.0     # dark border width, fraction of the image size
    scale: tuple[float, float] = (0.85, 1.02)   # patient size (thorax scale in the field of view)
    aspect: tuple[float, float] = (0.92, 1.08)  # thorax width / height
    rotation_deg: float = 3.0    # sd of patient rotation
    shift: float = 0.03          # sd of patient offset


MIMIC_STYLE = CXRStyle()
NIH_STYLE = CXRStyle(exposure=0.42, contrast=0.8, gamma=1.3, noise=0.03, grain=0.02, blur=0.007,
                     collimation=0.03, scale=(0.8, 0.98), rotation_deg=4.0, shift=0.04)


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-1, 1]: (x [S,S], y [S,S]) float32, read-only."""
    t = ((np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0)
    x, y = np.meshgrid(t, t)
    x.flags.writeable = y.flags.writeable = False
    return x, y


class Chest:
    """Anatomy on a normalised grid plus the accumulators findings write into."""

    tw = 0.78  # thorax half-width (anatomy units)

    def __init__(self, rng: np.random.Generator, size: int, style: CXRStyle):
        u = rng.uniform
        scale, aspect = u(*style.scale), u(*style.aspect)
        a = np.deg2rad(rng.normal(0.0, style.rotation_deg))
        dx, dy = rng.normal(0.0, style.shift, 2)
        x, y = _grid(size)
        xs, ys = x - dx, y - dy
        self.X = (np.cos(a) * xs + np.sin(a) * ys) / (scale * aspect)
        self.Y = (-np.sin(a) * xs + np.cos(a) * ys) / scale
        self.px = 2.0 / (size * scale)                 # one pixel in anatomy units
        self.apex = u(-0.66, -0.58)
        insp = u(0.4, 0.56)                            # diaphragm level: inspiration depth
        self.dia = {-1.0: insp - 0.04, 1.0: insp}       # the right hemidiaphragm sits higher
        self.dome = u(0.1, 0.16)
        self.ctr = u(0.4, 0.48)                        # heart / thorax width ratio
        self.heart_dx = u(0.04, 0.1)
        self.medi = u(0.08, 0.11)                      # upper mediastinal half-width
        self.mx = 0.0
        self.ribs = (u(0.12, 0.15), u(0.0, 1.0), u(0.25, 0.4))  # spacing, phase, curvature
        self.lung_tex, self.patch = _noise(rng, size, 0.01), _noise(rng, size, 0.04)

    def lung_mask(self, s: float, shrink: float = 0.0) -> np.ndarray:
        """Soft mask [S,S] of the lung on side ``s``; ``shrink`` pulls its apex and lateral edge in."""
        ax = self.X * s - s * self.mx
        apex = self.apex + 0.6 * shrink
        t = np.clip((self.Y - apex) / (0.45 * (self.dia[s] - apex)), 0.0, 1.0)
        lateral = self.tw * (0.42 + 0.58 * np.sqrt(t)) - shrink * self.tw * 0.5
        lo, hi = 0.07, self.tw
        dome = self.dia[s] - self.dome * np.clip(1.0 - ((ax - 0.5 * (lo + hi)) / (0.5 * (hi - lo))) ** 2, 0, 1)
        w = 1.5 * self.px
        return F.ramp(lateral - ax, w) * F.ramp(ax - lo, w) * F.ramp(dome - self.Y, w) * F.ramp(self.Y - apex, w)

    def build(self) -> None:
        """Masks that depend on the (possibly finding-modified) anatomy; resets the accumulators."""
        self.lung = {s: self.lung_mask(s) for s in (-1.0, 1.0)}
        self.heart_x, self.heart_y = self.mx + self.heart_dx, self.dia[1.0] - 0.26
        hw = self.ctr * self.tw
        self.heart = F.ramp(1.0 - ((self.X - self.heart_x) / hw) ** 2 - ((self.Y - self.heart_y) / 0.28) ** 2, 0.15)
        self.hilum_y = self.heart_y - 0.28
        self.mediastinum = F.ramp(self.medi - np.abs(self.X - self.mx), 2 * self.px) * (self.Y < self.heart_y)
        zeros = np.zeros_like(self.X)
        self.fill, self.dense, self.metal, self.extra_air = zeros, zeros.copy(), zeros.copy(), zeros.copy()
        self.texture = np.ones_like(self.X)


def _noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Smooth Gaussian noise [S,S] with unit standard deviation; ``sigma`` a fraction of the size."""
    n = gaussian_filter(rng.standard_normal((size, size)).astype(np.float32), sigma * size, mode="wrap")
    return n / (n.std() + 1e-6)


def _bones(c: Chest, fracture: dict | None) -> np.ndarray:
    """Spine, clavicles and posterior ribs [S,S]; a fracture displaces one rib by half a rib width."""
    spacing, phase, curve = c.ribs
    ax = np.abs(c.X - c.mx)
    k = (c.Y - c.apex + curve * (ax / c.tw - 0.3) ** 2) / spacing + phase
    if fracture is not None:
        s, fx = fracture["side"], fracture["ax"] * c.tw
        fy = c.apex + (fracture["rib"] - phase) * spacing - curve * (fx / c.tw - 0.3) ** 2
        near = (c.X * s > fx) * (np.abs(c.Y - fy) < 0.7 * spacing) * (c.X * s < fx + 0.25)
        k = k + 0.35 * near
    rib = np.clip(2.5 * (np.cos(2 * np.pi * k) - 0.55), 0.0, 1.0)
    thorax = F.ramp(c.tw + 0.04 - ax, 0.05) * F.ramp(c.Y - c.apex + 0.1, 0.05) * F.ramp(c.dia[1.0] + 0.05 - c.Y, 0.1)
    out = 0.12 * rib * thorax * F.ramp(ax - 0.06, 0.04)
    out += 0.14 * F.ramp(0.07 - ax, 2 * c.px)                                     # spine
    for s in (-1.0, 1.0):                                                         # clavicles
        pts = np.array([[c.mx + s * 0.08, c.apex - 0.02], [c.mx + s * 0.62, c.apex - 0.14]])
        out += 0.2 * F.ramp(0.035 - F.polyline(c.X, c.Y, pts), 2 * c.px)
    if fracture is not None:
        out += 0.12 * F.blob(c.X, c.Y, fracture["side"] * fx, fy, 0.03, 0.03)   # callus
    return out


def _compose(c: Chest, body: np.ndarray, bones: np.ndarray, cover: np.ndarray) -> np.ndarray:
    """Density map [S,S]: soft tissue minus lung air (less where filled), plus bone, findings, metal."""
    lungs = np.clip(c.lung[-1.0] + c.lung[1.0], 0.0, 1.0)
    air = lungs * (1.0 - cover) * (1.0 - c.fill)
    hila = F.blob(np.abs(c.X - c.mx), c.Y, 0.2, c.hilum_y, 0.35, 0.45)  # markings fade to the periphery
    marks = (0.035 + 0.05 * hila) * c.lung_tex * c.texture
    return 0.55 * body - air * (0.42 + 0.25 * c.extra_air - marks) + bones + c.dense + c.metal


def _frontal(c: Chest, findings: dict[str, bool], params: dict[str, dict], ap: bool = False) -> np.ndarray:
    """PA/AP view; AP films magnify the heart and mediastinum (beam diverges from the front)."""
    if findings.get("cardiomegaly"):
        c.ctr = params["cardiomegaly"]["ctr"]
    if findings.get("enlarged_cardiomediastinum"):
        c.medi = params["enlarged_cardiomediastinum"]["medi"]
    if findings.get("atelectasis"):                       # volume loss: raised hemidiaphragm, shift
        p = params["atelectasis"]
        c.dia[p["side"]] -= p["lift"]
        c.mx += p["side"] * p["shift"]
    if ap:
        c.ctr, c.medi = c.ctr * 1.08, c.medi * 1.1
    c.build()
    for key, render in F.RENDERERS.items():
        if findings.get(key):
            render(c, params[key])
    ay = np.abs(c.X)
    shoulders = 0.3 + 0.62 * np.sqrt(np.clip((c.Y + 1.05) / 0.4, 0.0, 1.0))
    body = F.ramp(shoulders - ay, 0.05) + 0.15 * F.ramp(c.Y - c.dia[1.0] - 0.05, 0.2)
    cover = np.maximum(c.heart, c.mediastinum)
    trachea = 0.12 * F.ramp(0.035 - np.abs(c.X - c.mx), 2 * c.px) * (c.Y < c.hilum_y - 0.05)
    bones = _bones(c, params["fracture"] if findings.get("fracture") else None) - trachea
    return _compose(c, body, bones, cover)


def _lateral(c: Chest, findings: dict[str, bool], params: dict[str, dict]) -> np.ndarray:
    """A simpler lateral view: anterior to the image left, spine posterior, heart antero-inferior."""
    X, Y = c.X, c.Y
    dia = c.dia[1.0] - c.dome * np.clip(1.0 - (X / 0.6) ** 2, 0.0, 1.0)
    lung = F.ramp(1.0 - ((X - 0.05) / 0.6) ** 2 - ((Y + 0.05) / 0.62) ** 2, 0.1) * F.ramp(dia - Y, 0.03)
    c.lung = {-1.0: lung, 1.0: np.zeros_like(lung)}
    ctr = params["cardiomegaly"]["ctr"] if findings.get("cardiomegaly") else c.ctr
    heart = F.ramp(1.0 - ((X + 0.22) / (0.7 * ctr)) ** 2 - ((Y - c.dia[1.0] + 0.22) / 0.3) ** 2, 0.15)
    zeros = np.zeros_like(X)
    c.fill, c.dense, c.metal, c.extra_air, c.texture = zeros, zeros.copy(), zeros.copy(), zeros.copy(), 1.0
    c.hilum_y, c.heart_x, c.heart_y = -0.05, -0.22, c.dia[1.0] - 0.22
    if findings.get("pleural_effusion"):
        c.fill = 0.9 * lung * F.ramp(Y - dia + params["pleural_effusion"]["h"] * 0.8, 0.06) * F.ramp(X - 0.1, 0.1)
    for key in ("lung_opacity", "consolidation", "pneumonia", "edema", "lung_lesion"):
        if findings.get(key):
            p = params[key]
            F.RENDERERS[key](c, {**p, "side": -np.abs(p["side"])} if "side" in p else p)
    if findings.get("support_devices"):
        c.metal = 0.9 * F.ramp(1.2 * c.px - F.polyline(X, Y, np.array([[-0.15, -1.1], [-0.05, -0.2]])), c.px)
    body = F.ramp(1.0 - (X / 0.8) ** 2, 0.05) + 0.15 * F.ramp(Y - c.dia[1.0], 0.2)
    vert = np.clip(np.cos(2 * np.pi * Y / 0.11), 0.0, 1.0)
    bones = (0.15 + 0.1 * vert) * F.ramp(0.09 - np.abs(X - 0.65), 2 * c.px)
    return _compose(c, body, bones, heart)


def _expose(density: np.ndarray, rng: np.random.Generator, style: CXRStyle) -> np.ndarray:
    """Density [S,S] -> uint8 image [S,S] through exposure, gamma, blur, noise and collimation."""
    size = density.shape[0]
    v = np.clip(style.exposure + style.contrast * (density - 0.35), 0.0, 1.0) ** style.gamma
    if style.blur > 0:
        v = gaussian_filter(v, style.blur * size)
    v = v + rng.normal(0.0, style.noise, v.shape).astype(np.float32)
    if style.grain > 0:
        v += style.grain * _noise(rng, size, 0.006)
    if style.collimation > 0:
        b = max(1, round(style.collimation * size))
        v[:b], v[-b:], v[:, :b], v[:, -b:] = 0.02, 0.02, 0.02, 0.02
    return np.clip(v * 255.0 + 0.5, 0, 255).astype(np.uint8)


def render_cxr(findings: dict[str, bool], rng: np.random.Generator, size: int, style: CXRStyle,
               view: str = "PA") -> np.ndarray:
    """Render one synthetic chest X-ray: uint8 [size, size]. ``findings`` maps FIELDS keys to bools."""
    check_fields(list(findings), "render_cxr findings")
    if view not in VIEWS:
        raise ValueError(f"render_cxr: unknown view {view!r}; expected one of {VIEWS}")
    if size < 16:
        raise ValueError(f"render_cxr: size {size} is too small (>= 16)")
    chest = Chest(rng, size, style)
    params = F.sample_params(rng)
    if view == "LATERAL":
        density = _lateral(chest, findings, params)
    else:
        density = _frontal(chest, findings, params, ap=view == "AP")
    return _expose(density.astype(np.float32), rng, style)
