"""Student: timm backbone by name, SPD shapes and orthogonality, export in timm's format (one timm line loads it)."""

from __future__ import annotations

import json

import pytest
import timm
import torch
from safetensors.torch import load_file

from helpers import backbone_params
from vivid_med.imaging import MEAN, STD
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


def _trained(cfg=TINY):
    """A backbone whose weights differ from any fresh init (as after training)."""
    torch.manual_seed(0)
    backbone = create_backbone(cfg)
    with torch.no_grad():
        for p in backbone.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return backbone.eval()


def test_export_is_timm_format_loading_through_local_dir_with_equal_features(tmp_path):
    backbone = _trained()
    objective = torch.nn.Module()
    objective.spd = SPD(64, groups=2, queries=2, heads=2)
    cfg = export_student(backbone, objective, tmp_path, TINY, "vivid")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "config.json", "heads.safetensors", "model.safetensors", "vivid_heads.json"]
    assert cfg == {"objective": "vivid", "spd": {"groups": 2, "queries": 2, "heads": 2},
                   "heads": "heads.safetensors", "n_params": count_params(backbone),
                   "bytes": (tmp_path / "model.safetensors").stat().st_size}
    saved = load_file(tmp_path / "model.safetensors")   # the same tensors as the trained ViT's, only a new container
    assert saved.keys() == backbone.state_dict().keys()
    assert all(torch.equal(saved[k], v) for k, v in backbone.state_dict().items())
    # the documented line: timm's own loader, nothing of vivid-med
    fresh = timm.create_model(f"local-dir:{tmp_path}", pretrained=True).eval()
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        ref = backbone.forward_features(x)
        assert torch.equal(fresh.forward_features(x), ref)
        assert torch.equal(fresh(x), backbone(x))  # pooled (CLS) features, num_classes=0
        assert torch.equal(load_backbone(tmp_path).forward_features(x), ref)
        tokens, z, attn = load_student(tmp_path)(x)
        ref_z, ref_attn = objective.spd.eval()(ref)
    assert torch.equal(tokens, ref) and torch.equal(z, ref_z) and torch.equal(attn, ref_attn)


@pytest.mark.parametrize("in_chans", [1, 3])
def test_config_is_timms_with_our_preprocessing_per_channel(tmp_path, in_chans):
    cfg = backbone_params(in_chans=in_chans, kwargs={"depth": 1, "embed_dim": 32, "num_heads": 2})
    backbone = _trained(cfg)
    export_student(backbone, None, tmp_path, cfg, "bce")
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architecture"] == "vit_tiny_patch16_224" and config["num_classes"] == 0
    assert {k: config["model_args"][k] for k in ("img_size", "patch_size", "in_chans", "depth", "embed_dim")} == {
        "img_size": [32, 32], "patch_size": 8, "in_chans": in_chans, "depth": 1, "embed_dim": 32}
    model = timm.create_model(f"local-dir:{tmp_path}", pretrained=True)
    assert timm.data.resolve_data_config({}, model=model) == {
        "input_size": (in_chans, 32, 32), "interpolation": "box", "mean": [MEAN] * in_chans, "std": [STD] * in_chans,
        "crop_pct": 1.0, "crop_mode": "border"}
    assert config["pretrained_cfg"]["tag"] == "vivid_med_bce"
    x = torch.randn(2, in_chans, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.eval().forward_features(x), backbone.forward_features(x))


def test_load_student_without_spd_old_format_and_missing_dir(tmp_path):
    backbone = create_backbone(TINY)
    assert export_student(backbone, None, tmp_path / "r", TINY, "none")["heads"] is None
    assert not (tmp_path / "r" / "heads.safetensors").exists()
    assert load_student(tmp_path / "r").spd is None
    no_spd = torch.nn.Module()
    no_spd.spd = PooledTokens(64)
    with torch.no_grad():
        no_spd.spd.norm_out.weight.mul_(2.0)
    assert export_student(backbone, no_spd, tmp_path / "off", TINY, "vivid_no_spd")["spd"] == "off"
    restored = load_student(tmp_path / "off").spd
    assert isinstance(restored, PooledTokens) and torch.equal(restored.norm_out.weight, no_spd.spd.norm_out.weight)
    with pytest.raises(FileNotFoundError, match="no exported backbone"):
        load_backbone(tmp_path / "missing")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.json").write_text(json.dumps({"timm": {"model_name": "vit_tiny_patch16_224"}}))
    with pytest.raises(ValueError, match="not timm's format"):
        load_backbone(tmp_path / "old")


def test_export_replaces_the_folder_whole(tmp_path):
    backbone = create_backbone(TINY)
    objective = torch.nn.Module()
    objective.spd = SPD(64, groups=2, queries=2, heads=2)
    export_student(backbone, objective, tmp_path / "r", TINY, "vivid")
    export_student(backbone, None, tmp_path / "r", TINY, "none")
    assert not (tmp_path / "r" / "heads.safetensors").exists()  # nothing of the previous export is left
    assert [p.name for p in tmp_path.iterdir()] == ["r"]        # nor a temporary folder


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
