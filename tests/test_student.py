"""Student: timm backbone by name, SPD shapes and orthogonality, export loadable by one timm line."""

from __future__ import annotations

import json

import pytest
import timm
import torch

from helpers import backbone_params
from vivid_med.params import ParamsError, validate_section
from vivid_med.student import (SPD, PooledTokens, SPDParams, build_spd, count_params, create_backbone,
                               export_student, load_backbone, load_student, orthogonality_loss)

TINY = backbone_params(kwargs={"depth": 2, "embed_dim": 64, "num_heads": 2})


def test_backbone_from_config_has_requested_tokens():
    model = create_backbone(TINY)
    assert model.forward_features(torch.zeros(2, 1, 32, 32)).shape == (2, 1 + 16, 64)
    with pytest.raises(Exception):
        create_backbone(backbone_params(model="resnet18"))


def test_spd_shapes_and_attention_rows():
    spd = SPD(64, groups=3, queries=2, heads=4)
    out, attn = spd(torch.randn(5, 17, 64))
    assert out.shape == (5, 6, 64) and attn.shape == (5, 3, 2, 17)
    assert torch.allclose(attn.sum(-1), torch.ones(5, 3, 2), atol=1e-5)
    # each group its own attention weights: the groups attend differently to the same tokens
    assert not torch.allclose(attn[:, 0], attn[:, 1])
    assert isinstance(build_spd(64, None), PooledTokens) and build_spd(64, None)(torch.randn(2, 5, 64))[1] is None
    assert isinstance(build_spd(64, SPDParams(groups=2, queries=1, heads=4)), SPD)
    with pytest.raises(ParamsError, match="spd.query: Extra inputs are not permitted"):
        validate_section(SPDParams, {"groups": 2, "queries": 3, "heads": 2, "query": 3}, "spd")


def test_orthogonality_matches_definition():
    disjoint = torch.zeros(1, 2, 1, 4)
    disjoint[0, 0, 0, :2], disjoint[0, 1, 0, 2:] = 0.5, 0.5
    assert orthogonality_loss(disjoint).item() == pytest.approx(0.0)
    same = torch.full((2, 3, 2, 4), 0.25)
    assert orthogonality_loss(same).item() == pytest.approx(1.0)
    assert orthogonality_loss(torch.rand(2, 1, 8, 4)).item() == 0.0  # G=1: no pairs
    assert orthogonality_loss(None) is None
    a = torch.rand(3, 4, 2, 6)
    m = a.mean(2)
    ref = torch.stack([torch.cosine_similarity(m[:, i], m[:, j], dim=-1).abs()
                       for i in range(4) for j in range(i + 1, 4)]).mean()
    assert orthogonality_loss(a).item() == pytest.approx(ref.item(), rel=1e-5)


def test_export_loads_in_one_timm_line_with_equal_features(tmp_path):
    torch.manual_seed(0)
    backbone = create_backbone(TINY)
    objective = torch.nn.Module()
    objective.spd = SPD(64, groups=2, queries=2, heads=2)
    with torch.no_grad():
        for p in backbone.parameters():
            p.add_(torch.randn_like(p) * 0.01)  # "trained": differs from any fresh init
    cfg = export_student(backbone, objective, tmp_path, TINY, "vivid")
    assert cfg["spd"] == {"groups": 2, "queries": 2, "heads": 2} and cfg["objective"] == "vivid"
    assert cfg["n_params"] == count_params(backbone) and cfg["bytes"] == (tmp_path / "backbone.safetensors").stat().st_size
    # the documented line
    fresh = timm.create_model(**json.load(open(tmp_path / "config.json"))["timm"],
                              checkpoint_path=str(tmp_path / "backbone.safetensors")).eval()
    x = torch.randn(3, 1, 32, 32)
    backbone.eval()
    with torch.no_grad():
        assert torch.equal(fresh.forward_features(x), backbone.forward_features(x))
        assert torch.equal(load_backbone(tmp_path).forward_features(x), backbone.forward_features(x))
        tokens, z, attn = load_student(tmp_path)(x)
        ref_z, ref_attn = objective.spd.eval()(backbone.forward_features(x))
    assert torch.equal(z, ref_z) and torch.equal(attn, ref_attn)


def test_load_student_without_spd_and_missing_dir(tmp_path):
    backbone = create_backbone(TINY)
    export_student(backbone, None, tmp_path / "r", TINY, "none")
    assert load_student(tmp_path / "r").spd is None
    with pytest.raises(FileNotFoundError, match="no exported backbone"):
        load_backbone(tmp_path / "missing")


def test_spd_group_equals_torch_multihead_attention():
    """Each group is exactly a standard multi-head cross-attention (nn.MultiheadAttention, same weights)."""
    torch.manual_seed(0)
    d, g, m, h = 32, 3, 2, 4
    spd = SPD(d, g, m, h)
    with torch.no_grad():
        for p in (spd.b_q, spd.b_v, spd.b_o):
            p.normal_()
    x = torch.randn(5, 7, d)
    out, attn = spd(x)
    xn = spd.norm_kv(x)
    for i in range(g):
        mha = torch.nn.MultiheadAttention(d, h, batch_first=True)
        with torch.no_grad():
            mha.in_proj_weight.copy_(torch.cat([spd.w_q[i].T, spd.w_k[i].T, spd.w_v[i].T]))
            mha.in_proj_bias.copy_(torch.cat([spd.b_q[i], torch.zeros(d), spd.b_v[i]]))
            mha.out_proj.weight.copy_(spd.w_o[i].T)
            mha.out_proj.bias.copy_(spd.b_o[i])
        ref, ref_attn = mha(spd.queries[i].expand(5, -1, -1), xn, xn, need_weights=True, average_attn_weights=True)
        torch.testing.assert_close(out[:, i * m:(i + 1) * m], spd.norm_out(ref), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(attn[:, i], ref_attn, atol=1e-6, rtol=1e-5)
