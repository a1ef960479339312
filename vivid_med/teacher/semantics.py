"""Teacher semantics against a reference nobody here wrote: co-occurrence of findings in real label tables.

Pieces (used by ``benchmarks/teacher_semantics.py``, unit-tested in ``tests/test_teacher_semantics.py``):

- ``NIH_FINDINGS``: the UMS fields NIH ChestX-ray14 shares, as data (UMS key -> NIH label names, OR-ed).
  "No Finding" is excluded: by construction it never co-occurs with a finding (its PMI with every finding
  would be -inf), so it says nothing about which findings go together.
- ``multi_hot`` / ``read_nih``: a ``|``-separated label column -> a boolean [N, F] matrix.
- ``Cooccurrence``: the distinct rows of a multi-hot matrix and their counts, so that PMI / phi and their
  bootstrap over images or over patients cost O(distinct rows), not O(images).
- ``pmi`` / ``phi`` per pair, ``pairs`` / ``upper`` (the F(F-1)/2 pairs, i < j, in a fixed order).
- ``spearman`` (average ranks for ties), ``bootstrap_pairs`` (percentile interval, resampling the pairs),
  ``spearman_rows`` (one vector against many), ``mantel_p`` (permutation p-value that permutes the *findings*,
  exact over all F! orders for F <= 8), ``pair_permutation_p`` (the naive one that shuffles pairs).
- ``prototypes_by_layer``: a teacher's (field, state) prototypes at every hidden layer from one run, pooled
  exactly as ``vivid_med.teacher.embed.Embedder`` pools one layer (same template, pooling, masking), and
  ``centre`` (subtract the mean over the prototype set, as the teacher cache does).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

from vivid_med.sources.nih import NIH_LABELS

#: UMS key -> NIH ChestX-ray14 "Finding Labels" names (any of them present = the finding is present).
NIH_FINDINGS: dict[str, tuple[str, ...]] = {
    "atelectasis": ("Atelectasis",),
    "cardiomegaly": ("Cardiomegaly",),
    "consolidation": ("Consolidation",),
    "edema": ("Edema",),
    "pleural_effusion": ("Effusion",),
    "pneumonia": ("Pneumonia",),
    "pneumothorax": ("Pneumothorax",),
    "lung_lesion": ("Mass", "Nodule"),
}
#: Every label NIH uses (14 findings + No Finding); anything else in the column is an error.
NIH_KNOWN: frozenset[str] = frozenset(NIH_LABELS) | {"No Finding"}
NIH_TABLE = "nih_cxr14_labels/Data_Entry_2017_v2020.csv.gz"


def multi_hot(labels: Iterable[str], mapping: Mapping[str, Sequence[str]] = NIH_FINDINGS, sep: str = "|",
              known: frozenset[str] | None = NIH_KNOWN) -> np.ndarray:
    """Boolean [N, F] (F = len(mapping), in its order): row n has finding f if any of f's names is in row n.

    ``known``: every label must be one of these (catches a misspelt mapping or a different table); None skips.
    """
    if known is not None:
        missing = sorted({n for names in mapping.values() for n in names} - known)
        if missing:
            raise ValueError(f"mapping names labels the table never uses: {missing}")
    col = {name: j for j, names in enumerate(mapping.values()) for name in names}
    rows = []
    for i, text in enumerate(labels):
        toks = [t.strip() for t in str(text).split(sep) if t.strip()]
        if known is not None and not set(toks) <= known:
            raise ValueError(f"row {i}: unknown label(s) {sorted(set(toks) - known)}")
        rows.append([col[t] for t in toks if t in col])
    out = np.zeros((len(rows), len(mapping)), dtype=bool)
    for i, js in enumerate(rows):
        out[i, js] = True
    return out


def read_nih(path: str | Path, mapping: Mapping[str, Sequence[str]] = NIH_FINDINGS) -> tuple[np.ndarray, np.ndarray]:
    """(multi-hot [N, F] bool, patient id [N]) from NIH's Data_Entry_2017 table (``.csv`` or ``.csv.gz``)."""
    import pandas as pd

    df = pd.read_csv(path, usecols=["Image Index", "Finding Labels", "Patient ID"])
    if df["Image Index"].duplicated().any():
        raise ValueError(f"{path}: duplicate Image Index rows")
    return multi_hot(df["Finding Labels"], mapping), df["Patient ID"].to_numpy()


def pairs(n: int) -> list[tuple[int, int]]:
    """The n(n-1)/2 index pairs i < j, row-major (the order of every pair vector here)."""
    return list(itertools.combinations(range(n), 2))


def upper(m: np.ndarray) -> np.ndarray:
    """[..., F, F] -> [..., F(F-1)/2]: the entries i < j in ``pairs`` order."""
    i, j = np.triu_indices(m.shape[-1], k=1)
    return m[..., i, j]


@dataclass(frozen=True)
class Cooccurrence:
    """A multi-hot matrix as its distinct rows ``patterns`` [K, F] and each image's pattern ``inverse`` [N]."""

    patterns: np.ndarray
    inverse: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray) -> "Cooccurrence":
        x = np.asarray(x, dtype=bool)
        if x.ndim != 2:
            raise ValueError(f"multi-hot matrix must be 2-D, got shape {x.shape}")
        patterns, inverse = np.unique(x, axis=0, return_inverse=True)
        return cls(patterns.astype(np.float64), inverse.reshape(-1))

    @property
    def n(self) -> int:
        return len(self.inverse)

    def counts(self, image_weights: np.ndarray | None = None) -> np.ndarray:
        """Weight of each pattern [K]: its number of images, or the sum of ``image_weights`` [N] over them."""
        return np.bincount(self.inverse, weights=image_weights, minlength=len(self.patterns)).astype(np.float64)

    def probabilities(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(P(a) [..., F], P(a, b) [..., F, F]) from pattern counts [..., K]."""
        w = counts / counts.sum(-1, keepdims=True)
        p = w @ self.patterns
        pab = np.einsum("...k,ki,kj->...ij", w, self.patterns, self.patterns)
        return p, pab

    def pmi(self, counts: np.ndarray | None = None) -> np.ndarray:
        """log P(a,b) / (P(a) P(b)) [..., F, F] (natural log; -inf where a and b never co-occur)."""
        p, pab = self.probabilities(self.counts() if counts is None else counts)
        with np.errstate(divide="ignore"):
            return np.log(pab) - np.log(p[..., :, None] * p[..., None, :])

    def phi(self, counts: np.ndarray | None = None) -> np.ndarray:
        """Phi coefficient (Pearson correlation of the two binary columns) [..., F, F]."""
        p, pab = self.probabilities(self.counts() if counts is None else counts)
        sd = np.sqrt(p * (1 - p))
        with np.errstate(invalid="ignore", divide="ignore"):
            return (pab - p[..., :, None] * p[..., None, :]) / (sd[..., :, None] * sd[..., None, :])

    def bootstrap_counts(self, n_boot: int, seed: int = 0, groups: np.ndarray | None = None) -> np.ndarray:
        """Pattern counts [n_boot, K] of resampled tables.

        ``groups`` None: resample images with replacement (a multinomial over patterns, exactly equivalent).
        ``groups`` [N] (e.g. patient ids): resample whole groups with replacement (cluster bootstrap: the
        images of one patient are not independent).
        """
        rng = np.random.default_rng(seed)
        if groups is None:
            return rng.multinomial(self.n, self.counts() / self.n, size=n_boot).astype(np.float64)
        _, gid = np.unique(np.asarray(groups), return_inverse=True)
        gid = gid.reshape(-1)
        n_groups = int(gid.max()) + 1
        # per group, its pattern counts (sparse through a flat bincount)
        k = len(self.patterns)
        cell, cnt = np.unique(gid * k + self.inverse, return_counts=True)
        g_of, p_of = cell // k, cell % k
        out = np.empty((n_boot, k))
        for b in range(n_boot):
            times = np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups)
            out[b] = np.bincount(p_of, weights=times[g_of] * cnt, minlength=k)
        return out


def group_weights(groups: np.ndarray) -> np.ndarray:
    """Per image 1 / (images of its group): every patient weighs the same (a per-patient de-duplication)."""
    _, inv, n = np.unique(np.asarray(groups), return_inverse=True, return_counts=True)
    return 1.0 / n[inv.reshape(-1)]


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks along the last axis, centred and scaled to unit norm (Pearson of these = Spearman)."""
    r = rankdata(x, axis=-1)
    r = r - r.mean(-1, keepdims=True)
    norm = np.linalg.norm(r, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return r / norm


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties; nan if either side is constant)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"spearman needs two 1-D vectors of one length, got {x.shape} and {y.shape}")
    return float(_ranks(x) @ _ranks(y))


def spearman_rows(x: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Spearman of ``x`` [P] with each row of ``ys`` [B, P] -> [B] (or of each row pair if x is [B, P])."""
    return np.einsum("...p,...p->...", _ranks(np.asarray(x, dtype=float)), _ranks(np.asarray(ys, dtype=float)))


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap ``samples`` (nan draws, e.g. a constant resample, are dropped)."""
    s = np.asarray(samples, dtype=float)
    s = s[np.isfinite(s)]
    if not len(s):
        return float("nan"), float("nan")
    a = (1 - level) / 2
    lo, hi = np.quantile(s, [a, 1 - a])
    return float(lo), float(hi)


def bootstrap_pairs(x: Sequence[float], y: Sequence[float], n_boot: int = 2000, seed: int = 0,
                    level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of Spearman(x, y) when the pairs (entries) are resampled with replacement."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    idx = pair_resamples(len(x), n_boot, seed)
    return percentile_interval(spearman_rows(x[idx], y[idx]), level)


def pair_resamples(n: int, n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """[n_boot, n] indices: ``n`` entries drawn with replacement, ``n_boot`` times (seeded)."""
    return np.random.default_rng(seed).integers(0, n, (n_boot, n))


def finding_permutations(n_findings: int, n_perm: int | None = None, seed: int = 0) -> np.ndarray:
    """[M, P] pair-index permutations induced by relabelling the findings (P = F(F-1)/2).

    All F! relabellings when ``n_perm`` is None (F <= 9), else the identity plus ``n_perm - 1`` random ones.
    """
    if n_perm is None:
        if n_findings > 9:
            raise ValueError(f"{n_findings}! permutations are too many: pass n_perm")
        perms = np.array(list(itertools.permutations(range(n_findings))))
    else:
        rng = np.random.default_rng(seed)
        perms = np.stack([np.arange(n_findings)] + [rng.permutation(n_findings) for _ in range(n_perm - 1)])
    pos = {p: k for k, p in enumerate(pairs(n_findings))}
    return np.array([[pos[tuple(sorted((int(pi[i]), int(pi[j]))))] for i, j in pairs(n_findings)] for pi in perms])


def mantel_p(x: Sequence[float], y: Sequence[float], perms: np.ndarray, alternative: str = "greater") -> float:
    """Permutation p-value of Spearman(x, y) over pair vectors of F findings.

    ``perms``: ``finding_permutations(F)``. The null relabels the findings of ``y`` (a Mantel test), which keeps
    the dependence between pairs that share a finding; shuffling the pairs freely (``pair_permutation_p``)
    ignores it and is anti-conservative for matrix data. The identity is among the permutations, so p > 0.
    ``alternative``: ``greater`` (rho > 0), ``less`` or ``two-sided`` (|rho|).
    """
    rx, ry = _ranks(np.asarray(x, dtype=float)), _ranks(np.asarray(y, dtype=float))
    null, obs = ry[perms] @ rx, rx @ ry  # the ranks of a permuted vector are the permuted ranks
    if alternative == "greater":
        return float(np.mean(null >= obs - 1e-12))
    if alternative == "less":
        return float(np.mean(null <= obs + 1e-12))
    if alternative == "two-sided":
        return float(np.mean(np.abs(null) >= abs(obs) - 1e-12))
    raise ValueError(f"alternative {alternative!r}: expected greater, less or two-sided")


def pair_permutation_p(x: Sequence[float], y: Sequence[float], n_perm: int = 2000, seed: int = 0) -> float:
    """One-sided (greater) p-value of Spearman(x, y) shuffling the entries of ``y`` (p = (1 + #>=) / (1 + n))."""
    rx, ry = _ranks(np.asarray(x, dtype=float)), _ranks(np.asarray(y, dtype=float))
    idx = np.argsort(np.random.default_rng(seed).random((n_perm, len(ry))), axis=1)
    null = ry[idx] @ rx
    return float((1 + np.sum(null >= rx @ ry - 1e-12)) / (1 + n_perm))


def cosine_pairs(vectors: np.ndarray) -> np.ndarray:
    """Cosine similarity of the rows of ``vectors`` [..., F, D] -> [..., F(F-1)/2] in ``pairs`` order."""
    v = np.asarray(vectors, dtype=np.float64)
    v = v / np.linalg.norm(v, axis=-1, keepdims=True)
    return upper(np.einsum("...id,...jd->...ij", v, v))


def centre(prototypes, dims: int = 3):
    """Subtract the mean over the prototype set (all fields and states), per leading index, as the cache does.

    ``prototypes`` [..., F, S, D] (torch or numpy); the mean is over F and S.
    """
    flat = prototypes.reshape(*prototypes.shape[:-dims], -1, prototypes.shape[-1])
    return prototypes - flat.mean(-2)[..., None, None, :]


def prototypes_by_layer(embedder, batch_size: int = 36, share_prefix: bool = True):
    """Raw (not centred) prototypes of every (field, state) at every hidden layer: float32 [L+1, F, S, D].

    ``embedder``: a ``vivid_med.teacher.embed.Embedder`` whose teacher was built to depth L (index 0 is the
    embedding output). Tokens, pooling weights, padding, attention mask and positions are those of
    ``Embedder`` (``Embedder.encode`` and the same masked, position-following batches), so layer k equals
    ``Embedder.prototypes()`` of a teacher built to layer k (tested on a tiny model).
    ``share_prefix`` (causal LMs only): the token prefix every prototype shares (system and user turns of the
    chat template, the JSON's opening) pools nothing and, in a causal LM, cannot see what follows; it is run
    once and its key/value cache reused, which halves the work for SmolLM2 (same numbers up to float rounding).
    """
    import copy
    import inspect

    import torch

    from vivid_med.fields import DISPLAY_NAMES
    from vivid_med.states import STATE_VALUES
    from vivid_med.teacher.embed import prototype_text

    fields = embedder.fields
    items = [(f, s) for f in fields for s in STATE_VALUES]
    enc = embedder.encode([prototype_text(f, s) for f, s in items], [[DISPLAY_NAMES[f]] for f, _ in items])
    teacher = embedder.teacher
    model, dev = teacher.model, teacher.model.device
    pad_id = teacher.tokenizer.pad_token_id or 0
    n_prefix, cache = 0, None
    if share_prefix and teacher.causal:
        first = [ids for ids, _ in enc]
        n_prefix = min(len(ids) for ids in first)
        for ids in first[1:]:
            n_prefix = next((j for j in range(n_prefix) if ids[j] != first[0][j]), n_prefix)
        n_prefix = min([n_prefix] + [next(j for j, w in enumerate(ws) if w) for _, ws in enc])  # pooled: not shared
        if n_prefix > 0:
            with torch.no_grad():
                out = model(input_ids=torch.tensor([first[0][:n_prefix]], device=dev), use_cache=True)
            cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
        # transformers 5.x names the argument ``cache`` (``past_key_values`` is deprecated there)
        cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    out = None
    for s in range(0, len(enc), batch_size):
        batch = [(ids[n_prefix:], w[n_prefix:]) for ids, w in enc[s:s + batch_size]]
        n = max(len(ids) for ids, _ in batch)
        ids = torch.full((len(batch), n), pad_id, dtype=torch.long)
        mask = torch.zeros(len(batch), n, dtype=torch.long)
        pool = torch.zeros(len(batch), n)
        for b, (tid, w) in enumerate(batch):
            ids[b, :len(tid)], mask[b, :len(tid)], pool[b, :len(tid)] = torch.tensor(tid), 1, torch.tensor(w)
        pos = (mask.cumsum(-1) - 1).clamp(min=0) + n_prefix
        kw = {}
        if cache is not None:
            past = copy.deepcopy(cache)
            past.batch_repeat_interleave(len(batch))
            mask = torch.cat([torch.ones(len(batch), n_prefix, dtype=torch.long), mask], 1)
            kw = {cache_arg: past, "use_cache": True}
        with torch.no_grad():
            hs = model(input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev),
                       output_hidden_states=True, **kw).hidden_states
        pooled = torch.einsum("lbtd,bt->lbd", torch.stack([h.float() for h in hs]), pool.to(dev)).cpu()
        if out is None:
            out = torch.empty(pooled.shape[0], len(enc), pooled.shape[-1])
        out[:, s:s + len(batch)] = pooled
    return out.view(out.shape[0], len(fields), len(STATE_VALUES), -1)
