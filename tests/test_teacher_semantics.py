"""vivid_med.teacher.semantics: PMI / phi from a multi-hot matrix, Spearman with bootstrap and permutation
tests, all-layer prototypes; and (realdata) the 28-pair PMI table of NIH ChestX-ray14."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vivid_med.teacher.semantics import (
    NIH_FINDINGS, NIH_TABLE, Cooccurrence, bootstrap_pairs, centre, cosine_pairs, finding_permutations,
    group_weights, mantel_p, multi_hot, pair_permutation_p, pairs, percentile_interval, read_nih, spearman,
    spearman_rows, upper,
)


def test_multi_hot_maps_and_ors_names():
    x = multi_hot(["Mass|Effusion", "No Finding", "Nodule", "Mass|Nodule|Hernia"])
    keys = list(NIH_FINDINGS)
    assert x.shape == (4, 8) and x.dtype == bool
    assert x[0, keys.index("lung_lesion")] and x[0, keys.index("pleural_effusion")] and x[0].sum() == 2
    assert not x[1].any()
    assert x[2, keys.index("lung_lesion")] and x[3].sum() == 1  # Mass or Nodule -> one finding; Hernia unmapped
    with pytest.raises(ValueError, match="unknown label"):
        multi_hot(["Effusion|Efusion"])
    with pytest.raises(ValueError, match="never uses"):
        multi_hot(["Effusion"], {"pleural_effusion": ("Pleural Effusion",)})


def test_pmi_of_independent_columns_is_about_zero():
    rng = np.random.default_rng(0)
    x = rng.random((200_000, 4)) < np.array([0.05, 0.1, 0.2, 0.4])
    c = Cooccurrence.of(x)
    assert np.abs(upper(c.pmi())).max() < 0.1
    assert np.abs(upper(c.phi())).max() < 0.01


def test_pmi_and_phi_exact_values():
    # 10 rows: a in 4, b in 5, both in 2 -> PMI = log(0.2 / (0.4 * 0.5)) = 0; c only with a -> log(0.2/(0.4*0.2))
    a = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    b = [1, 1, 0, 0, 1, 1, 1, 0, 0, 0]
    c = [1, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    d = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1]
    co = Cooccurrence.of(np.array([a, b, c, d]).T)
    m = co.pmi()
    assert m[0, 1] == pytest.approx(0.0, abs=1e-12)
    assert m[0, 2] == pytest.approx(math.log(0.2 / (0.4 * 0.2)))
    assert m[0, 3] == -math.inf and m[1, 0] == m[0, 1]  # never together; symmetric
    phi = co.phi()
    assert phi[0, 2] == pytest.approx(np.corrcoef(a, c)[0, 1])
    assert phi[1, 3] == pytest.approx(np.corrcoef(b, d)[0, 1])
    assert upper(m).shape == (6,) and pairs(4)[:3] == [(0, 1), (0, 2), (0, 3)]


def test_bootstrap_counts_images_and_groups():
    rng = np.random.default_rng(1)
    x = rng.random((5000, 3)) < 0.3
    c = Cooccurrence.of(x)
    b1, b2 = c.bootstrap_counts(50, seed=3), c.bootstrap_counts(50, seed=3)
    assert np.array_equal(b1, b2) and (b1.sum(1) == 5000).all()
    groups = np.repeat(np.arange(1000), 5)
    g = c.bootstrap_counts(50, seed=3, groups=groups)
    assert (g.sum(1) == 5000).all()  # equal-size groups: the resampled table keeps its size
    # resampling one group of identical rows many times can only give that group's pattern
    one = Cooccurrence.of(np.array([[1, 0, 1]] * 4, dtype=bool))
    assert np.array_equal(one.bootstrap_counts(5, groups=np.zeros(4)), np.full((5, 1), 4.0))
    w = group_weights(np.array([7, 7, 7, 9]))
    assert np.allclose(w, [1 / 3, 1 / 3, 1 / 3, 1.0])


def test_spearman_ties_and_rows():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(np.corrcoef([1, 2.5, 2.5, 4], [1, 2, 3, 4])[0, 1])
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))
    rows = spearman_rows([1, 2, 3], np.array([[1, 2, 3], [3, 2, 1]]))
    assert np.allclose(rows, [1, -1])


def test_rank_matched_cosine_gives_one_with_a_tight_interval():
    rng = np.random.default_rng(0)
    pmi = rng.normal(size=28)
    cos = np.tanh(pmi / 3)  # a different scale, the same order
    assert spearman(pmi, cos) == pytest.approx(1.0)
    lo, hi = bootstrap_pairs(pmi, cos, n_boot=2000, seed=0)
    assert lo == pytest.approx(1.0) and hi == pytest.approx(1.0)
    noisy = pmi + rng.normal(scale=2.0, size=28)
    lo, hi = bootstrap_pairs(pmi, noisy, n_boot=2000, seed=0)
    assert lo < spearman(pmi, noisy) < hi and hi - lo > 0.1


def test_bootstrap_is_seeded():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=28), rng.normal(size=28)
    assert bootstrap_pairs(x, y, 500, seed=0) == bootstrap_pairs(x, y, 500, seed=0)
    assert bootstrap_pairs(x, y, 500, seed=0) != bootstrap_pairs(x, y, 500, seed=1)
    assert pair_permutation_p(x, y, 500, seed=0) == pair_permutation_p(x, y, 500, seed=0)
    assert percentile_interval(np.array([np.nan, 1.0, 2.0, 3.0]), 0.5) == (1.5, 2.5)


def test_mantel_permutations():
    perms = finding_permutations(4)
    assert perms.shape == (24, 6) and (np.sort(perms, 1) == np.arange(6)).all()
    assert (perms == np.arange(6)).all(1).sum() == 1  # the identity once
    # y_ij = f_i + f_j: only the identity keeps its order (the reversal f -> 3 - f gives rho = -1)
    f = np.array([0.0, 1.0, 2.0, 3.0])
    y = upper(f[:, None] + f[None, :])
    assert mantel_p(y, y, perms) == pytest.approx(1 / 24)
    assert mantel_p(y, -y, perms) == pytest.approx(1.0)
    assert mantel_p(y, -y, perms, "less") == pytest.approx(1 / 24)
    assert mantel_p(y, -y, perms, "two-sided") == pytest.approx(2 / 24)  # the identity and the reversal
    with pytest.raises(ValueError, match="alternative"):
        mantel_p(y, y, perms, "both")
    assert finding_permutations(8).shape == (40320, 28)
    assert finding_permutations(12, n_perm=100, seed=0).shape == (100, 66)
    rng = np.random.default_rng(0)
    p = [mantel_p(rng.normal(size=6), rng.normal(size=6), perms) for _ in range(200)]
    assert 0.35 < np.mean(p) < 0.65  # about uniform under the null


def test_cosine_pairs_and_centre():
    v = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    assert np.allclose(cosine_pairs(v), [0.0, 1 / math.sqrt(2), 1 / math.sqrt(2)])
    p = np.random.default_rng(0).normal(size=(2, 4, 3, 5))  # [L, F, S, D]
    c = centre(p)
    assert np.allclose(c.reshape(2, -1, 5).mean(1), 0) and np.allclose(c[1], centre(p[1]))


def test_prototypes_by_layer_match_embedder(tmp_path):
    """Every layer of one run equals the Embedder's prototypes of a teacher built to that layer."""
    torch = pytest.importorskip("torch")
    from tiny_teacher import write_tiny
    from vivid_med.teacher.embed import Embedder
    from vivid_med.teacher.load import load_teacher
    from vivid_med.teacher.semantics import prototypes_by_layer

    folder = write_tiny(tmp_path / "tiny", layers=3)
    fields = ["edema", "pneumonia", "pleural_effusion"]
    full = load_teacher(folder, layer=3)
    emb = Embedder(full, "name_state", "chat", fields)
    allp = prototypes_by_layer(emb, batch_size=4)  # the shared prefix from a key/value cache
    plain = prototypes_by_layer(emb, batch_size=5, share_prefix=False)
    assert allp.shape[:3] == (4, 3, 3)
    for k in (1, 2, 3):
        ref = Embedder(load_teacher(folder, layer=k), "name_state", "chat", fields).prototypes().float()
        assert torch.allclose(allp[k], ref, atol=1e-5) and torch.allclose(plain[k], ref, atol=1e-5)


@pytest.mark.realdata
def test_nih_pmi_table(shared_data):
    path = shared_data / NIH_TABLE
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    x, patients = read_nih(path)
    assert x.shape == (112_120, 8) and len(np.unique(patients)) == 30_805
    keys = list(NIH_FINDINGS)
    counts = dict(zip(keys, x.sum(0).tolist()))
    assert counts["pleural_effusion"] == 13_317 and counts["atelectasis"] == 11_559  # NIH's published counts
    c = Cooccurrence.of(x)
    m = c.pmi()
    assert m.shape == (8, 8) and np.allclose(m, m.T) and upper(m).shape == (28,)
    assert np.isfinite(upper(m)).all()  # every pair of these 8 co-occurs at least once
    ix = keys.index
    assert m[ix("pleural_effusion"), ix("atelectasis")] > 0.5
    assert m[ix("edema"), ix("pneumonia")] > 1.0  # the strongest pair
    assert m[ix("edema"), ix("pneumothorax")] < 0
    assert spearman(upper(m), upper(c.phi())) > 0.8
