"""Finding renderers for the synthetic chest X-ray (used by ``vivid_med.demo.cxr``).

Each renderer reads a ``Chest`` (anatomy masks on a normalised grid) and its parameters (drawn by
``sample_params`` whether or not the finding is present, so toggling one finding leaves the anatomy and
every other finding unchanged) and adds to the chest's accumulators:
``fill`` (fraction of lung air replaced by fluid/tissue, [S,S] in [0,1]), ``dense`` (extra density on top),
``metal`` (radio-opaque devices), ``extra_air`` (pneumothorax) and ``texture`` (lung-marking multiplier).
Coordinates: X to the image right (patient's left), Y downwards, both about [-1, 1]; side -1/+1 = image left/right.
"""

from __future__ import annotations

import numpy as np


def ramp(z: np.ndarray, w: float) -> np.ndarray:
    """Soft step: 0 for z <= -w/2, 1 for z >= w/2, linear between."""
    return np.clip(0.5 + z / w, 0.0, 1.0)


def blob(X: np.ndarray, Y: np.ndarray, x0: float, y0: float, sx: float, sy: float) -> np.ndarray:
    """Gaussian bump with peak 1 at (x0, y0) and standard deviations (sx, sy)."""
    return np.exp(-0.5 * (((X - x0) / sx) ** 2 + ((Y - y0) / sy) ** 2))


def polyline(X: np.ndarray, Y: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Distance from each grid point to a polyline through ``pts`` [K,2] (X, Y)."""
    d = np.full(X.shape, np.inf, dtype=X.dtype)
    for (x0, y0), (x1, y1) in zip(pts[:-1], pts[1:]):
        vx, vy = x1 - x0, y1 - y0
        t = np.clip(((X - x0) * vx + (Y - y0) * vy) / max(vx * vx + vy * vy, 1e-9), 0.0, 1.0)
        d = np.minimum(d, np.hypot(X - x0 - t * vx, Y - y0 - t * vy))
    return d


def _union(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return 1.0 - (1.0 - a) * (1.0 - b)


def sample_params(rng: np.random.Generator) -> dict[str, dict]:
    """Draw every finding's parameters (a fixed number of draws, independent of which are present)."""
    u = rng.uniform
    side = lambda: float(rng.choice((-1.0, 1.0)))  # noqa: E731
    return {
        "enlarged_cardiomediastinum": {"medi": u(0.17, 0.22)},
        "cardiomegaly": {"ctr": u(0.58, 0.68)},
        "pleural_effusion": {"side": side(), "both": u() < 0.35, "h": u(0.14, 0.3), "h2": u(0.1, 0.2)},
        "lung_opacity": {"n": int(rng.integers(1, 4)), "side": rng.choice((-1.0, 1.0), 3),
                         "ax": u(0.35, 0.7, 3), "y": u(-0.35, 0.15, 3), "r": u(0.14, 0.22, 3)},
        "consolidation": {"side": side(), "lower": u() < 0.7, "depth": u(0.3, 0.45)},
        "pneumonia": {"side": side(), "ax": u(0.5, 0.72), "up": u(0.28, 0.42), "r": u(0.17, 0.24)},
        "edema": {"amount": u(0.4, 0.6), "spread": u(0.22, 0.3)},
        "pneumothorax": {"side": side(), "d": u(0.3, 0.45)},
        "lung_lesion": {"n": int(rng.integers(1, 4)), "side": rng.choice((-1.0, 1.0), 3),
                        "ax": u(0.3, 0.7, 3), "y": u(-0.4, 0.2, 3), "r": u(0.05, 0.08, 3)},
        "atelectasis": {"side": side(), "plate": u() < 0.6, "up": u(0.15, 0.3), "tilt": u(-0.08, 0.08),
                        "lift": u(0.06, 0.1), "shift": u(0.03, 0.05)},
        "pleural_other": {"side": side(), "t": u(0.04, 0.07)},
        "fracture": {"side": side(), "rib": int(rng.integers(2, 7)), "ax": u(0.45, 0.75)},
        "support_devices": {"which": u(size=4) < 0.5, "first": int(rng.integers(0, 4)),
                            "tip": u(-0.1, 0.1), "px": u(0.35, 0.55)},
    }


def effusion(c, p: dict) -> None:
    """Fluid in the lung base with a meniscus rising laterally: blunts the costophrenic angle."""
    for s, h in ((p["side"], p["h"]), (-p["side"], p["h2"] if p["both"] else None)):
        if h is None:
            continue
        ax = c.X * s
        level = c.dia[s] - h - 0.18 * np.clip(ax / c.tw, 0.0, 1.0)
        c.fill = _union(c.fill, 0.92 * c.lung[s] * ramp(c.Y - level, 0.06))


def opacity(c, p: dict) -> None:
    """Patchy ill-defined opacities in random lung zones."""
    for i in range(p["n"]):
        s = p["side"][i]
        b = blob(c.X, c.Y, s * p["ax"][i] * c.tw, p["y"][i], p["r"][i], p["r"][i])
        c.fill = _union(c.fill, 0.75 * c.lung[s] * b * np.clip(0.8 + 1.5 * c.patch, 0.0, 1.0))


def _bronchogram(c) -> np.ndarray:
    """Thin branching air lines (level sets of smooth noise) kept inside dense consolidation."""
    return ramp(0.07 - np.abs(c.patch), 0.05)


def consolidation(c, p: dict) -> None:
    """Dense lobar opacity (lower zone below an oblique fissure, or upper lobe) with air bronchograms."""
    s = p["side"]
    ax = c.X * s
    if p["lower"]:
        lobe = ramp(c.Y - (c.dia[s] - p["depth"] - 0.15 * np.clip(ax / c.tw, 0, 1)), 0.05)
    else:
        lobe = ramp(c.apex + 0.3 + p["depth"] - c.Y, 0.05)
    c.fill = _union(c.fill, 0.9 * c.lung[s] * lobe * (1.0 - 0.45 * _bronchogram(c)))


def pneumonia(c, p: dict) -> None:
    """A focal, fairly dense rounded patch in the lower zone."""
    s = p["side"]
    d = np.hypot(c.X - s * p["ax"] * c.tw, c.Y - (c.dia[s] - p["up"]))
    patch = ramp(p["r"] - d, 0.08) * np.clip(0.8 + c.patch, 0.0, 1.0)
    c.fill = _union(c.fill, 0.85 * c.lung[s] * patch * (1.0 - 0.35 * _bronchogram(c)))


def edema(c, p: dict) -> None:
    """Bilateral perihilar ("bat-wing") haze plus a diffuse increase in lung density."""
    hy = c.hilum_y
    wing = blob(c.X, c.Y, -0.3, hy, p["spread"], 0.3) + blob(c.X, c.Y, 0.3, hy, p["spread"], 0.3)
    c.fill = _union(c.fill, (c.lung[-1.0] + c.lung[1.0]) * np.clip(p["amount"] * wing + 0.12, 0.0, 1.0))


def pneumothorax(c, p: dict) -> None:
    """Lung edge pulled away from the apex/side: a pleural line, lucent rim, no lung markings."""
    s = p["side"]
    inner = c.lung_mask(s, shrink=p["d"])
    rim = np.clip(c.lung[s] - inner, 0.0, 1.0)
    c.texture *= 1.0 - rim
    c.extra_air += 0.8 * rim
    c.dense += 0.25 * 4.0 * inner * (1.0 - inner) * c.lung[s]


def lesion(c, p: dict) -> None:
    """One to three round, sharply marginated nodules."""
    for i in range(p["n"]):
        d = np.hypot(c.X - p["side"][i] * p["ax"][i] * c.tw, c.Y - p["y"][i])
        c.dense += 0.45 * ramp(p["r"][i] - d, c.px)


def atelectasis(c, p: dict) -> None:
    """Plate-like band or basal wedge of collapsed lung (volume loss is applied to the anatomy)."""
    s = p["side"]
    y0 = c.dia[s] - p["up"]
    if p["plate"]:
        pts = np.array([[s * 0.15, y0 - p["tilt"]], [s * 0.75 * c.tw, y0 + p["tilt"]]])
        band = ramp(0.06 - polyline(c.X, c.Y, pts), 0.04)
    else:
        band = ramp(c.Y - y0 + 0.25 * (c.X * s - 0.1), 0.05) * ramp(0.45 - c.X * s, 0.05)
    c.fill = _union(c.fill, 0.9 * c.lung[s] * band)


def pleural_thickening(c, p: dict) -> None:
    """Pleural Other rendered as lateral pleural thickening with an apical cap."""
    s = p["side"]
    edge = c.lung[s] * (1.0 - c.lung_mask(s, shrink=p["t"]))
    c.dense += 0.35 * edge


def devices(c, p: dict) -> None:
    """Tubes and lines (ET tube, NG tube, central line) and a pacemaker with its lead."""
    which = p["which"].copy()
    which[p["first"]] = True
    tip, w = p["tip"], 1.2 * c.px
    paths = [
        np.array([[c.mx, -1.1], [c.mx + 0.01, c.hilum_y - 0.2 + tip]]),                       # ET tube
        np.array([[c.mx - 0.03, -1.1], [c.mx - 0.02, 0.3], [0.35, c.dia[1.0] + 0.25]]),        # NG tube
        np.array([[-0.6, -0.75], [-0.25, -0.6], [c.mx - 0.08, -0.45], [c.mx - 0.06, -0.1 + tip]]),  # CVC
    ]
    for on, pts in zip(which[:3], paths):
        if on:
            c.metal = np.maximum(c.metal, 0.9 * ramp(w - polyline(c.X, c.Y, pts), c.px))
    if which[3]:
        box = ramp(0.1 - np.abs(c.X - p["px"]), c.px) * ramp(0.07 - np.abs(c.Y + 0.62), c.px)
        lead = np.array([[p["px"], -0.62], [0.15, -0.35], [c.heart_x - 0.05, c.heart_y + 0.1]])
        c.metal = np.maximum(c.metal, np.maximum(1.4 * box, 0.9 * ramp(w - polyline(c.X, c.Y, lead), c.px)))


#: Finding key -> renderer. Cardiomegaly, enlarged cardiomediastinum, fracture and the volume loss of
#: atelectasis change the anatomy itself (see cxr.py); no_finding has no renderer.
RENDERERS = {
    "pleural_effusion": effusion, "lung_opacity": opacity, "consolidation": consolidation,
    "pneumonia": pneumonia, "edema": edema, "pneumothorax": pneumothorax, "lung_lesion": lesion,
    "atelectasis": atelectasis, "pleural_other": pleural_thickening, "support_devices": devices,
}
