"""Objectives: the registry contract, loss terms, answerability masking, ignored states, and vivid's real
dependence on the teacher."""

from __future__ import annotations

import pytest
import torch

from helpers import backbone_params, objective_config
from vivid_med.objectives import OBJECTIVES, Resources
from vivid_med.objectives.bce import BCEObjective
from vivid_med.objectives.state_classifier import StateClassifierObjective
from vivid_med.objectives.vivid import VividObjective, select_prototypes
from vivid_med.states import NULL_CODE, State
from vivid_med.student import SPDParams, create_backbone, export_student, load_student
from vivid_med.teacher.cache import TeacherCache

P, A, U, NULL = State.PRESENT.code, State.ABSENT.code, State.UNCERTAIN.code, NULL_CODE
SPD = SPDParams(groups=2, queries=2, heads=2)
FIELDS = ("edema", "cardiomegaly", "fracture", "pneumonia")


def _teacher(seed: int, n_fields: int = 4, dim: int = 16, n_targets: int = 5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n_fields, 3, dim, generator=g), torch.randn(n_targets, dim, generator=g)


def _vivid(protos, targets, spd=SPD, orth_weight=0.02, align_weight=1.0, answerability_mask=True):
    return VividObjective(32, protos, targets, spd, orth_weight, align_weight, answerability_mask, 0.1)


def _batch():
    states = torch.tensor([[P, A, NULL, U], [A, NULL, NULL, P], [NULL, P, NULL, A]])
    return {"states": states, "target_row": torch.tensor([0, 3, 0])}


def _tokens(seed: int = 0):
    return torch.randn(3, 9, 32, generator=torch.Generator().manual_seed(seed), requires_grad=True)


@pytest.fixture(scope="module")
def resources(tmp_path_factory) -> Resources:
    """Real resources for every need: a TeacherCache of random tensors and a tiny random Llama with its head."""
    from tiny_teacher import write_tiny
    from vivid_med.teacher.load import load_teacher

    protos, targets = _teacher(1)
    cache = TeacherCache(FIELDS, tuple(s.value for s in State), protos, [f"h{i}" for i in range(5)], targets,
                         {"variant": "pretrained"})
    folder = write_tiny(tmp_path_factory.mktemp("lm") / "tiny", layers=2)
    return Resources(FIELDS, seed=0, teacher_cache=cache, language_model=load_teacher(folder, head=True))


@pytest.mark.parametrize("name", OBJECTIVES.names())
def test_every_registered_objective_keeps_the_contract(name, resources, tmp_path):
    """Build from its params.yaml config, forward a tiny batch, finite loss with gradients, export and reload."""
    from vivid_med.ums import cxr_record, provenance, target_text

    cls = OBJECTIVES[name]
    torch.manual_seed(0)
    backbone = create_backbone(backbone_params())
    objective = cls.build(objective_config(name), backbone.num_features, resources)
    images = torch.randn(3, 1, 32, 32)
    batch = _batch()
    if cls.needs.target_text:
        batch["target_text"] = [target_text(cxr_record({"edema": "present"}, "PA", provenance()))] * 3
    tokens = backbone.forward_features(images)
    out = objective(tokens, backbone.forward_head(tokens, pre_logits=True), batch)
    assert torch.isfinite(out["loss"]) and out["loss"].ndim == 0
    out["loss"].backward()
    assert backbone.patch_embed.proj.weight.grad.abs().sum() > 0, f"{name}: no gradient reaches the ViT"
    export_student(backbone, objective, tmp_path, backbone_params(), name)
    reloaded = load_student(tmp_path).eval()
    backbone.eval()
    with torch.no_grad():
        assert torch.equal(reloaded.backbone.forward_features(images), backbone.forward_features(images))
        if getattr(objective, "spd", None) is not None and reloaded.spd is not None:
            assert torch.equal(reloaded.spd(backbone.forward_features(images))[0],
                               objective.spd.eval()(backbone.forward_features(images))[0])


def test_vivid_terms_and_total():
    torch.manual_seed(0)
    protos, targets = _teacher(1)
    loss = _vivid(protos, targets, orth_weight=0.5, align_weight=2.0)
    tokens = _tokens()
    out = loss(tokens, tokens[:, 0], _batch())
    assert set(out) == {"loss", "state", "align", "orth", "state_acc"}
    assert out["loss"].item() == pytest.approx((out["state"] + 2.0 * out["align"] + 0.5 * out["orth"]).item(), rel=1e-6)
    out["loss"].backward()
    assert tokens.grad.abs().sum() > 0
    no_spd = _vivid(protos, targets, spd=None)(tokens, tokens[:, 0], _batch())
    assert "orth" not in no_spd


def test_answerability_mask_null_fields_carry_no_loss():
    protos, targets = _teacher(1)
    changed = protos.clone()
    changed[2] = torch.randn(3, 16)  # field 2 is null in every sample of the batch
    tokens = _tokens()
    for mask, same in ((True, True), (False, False)):
        torch.manual_seed(0)
        a = _vivid(protos, targets, answerability_mask=mask)(tokens, None, _batch())
        torch.manual_seed(0)
        b = _vivid(changed, targets, answerability_mask=mask)(tokens, None, _batch())
        assert torch.equal(a["state"], b["state"]) is same


def test_vivid_depends_on_the_teacher():
    """Same seed, same data: pretrained vs random vs shuffled prototypes differ at step 0 and after 3 steps."""
    cfg = backbone_params()
    pretrained = _teacher(1)
    random = _teacher(2)
    shuffled = (pretrained[0].flatten(0, 1)[torch.randperm(12, generator=torch.Generator().manual_seed(3))]
                .view(4, 3, 16), pretrained[1])
    images = torch.randn(3, 1, 32, 32, generator=torch.Generator().manual_seed(4))
    first, final = {}, {}
    for name, (protos, targets) in {"pretrained": pretrained, "random": random, "shuffled": shuffled}.items():
        torch.manual_seed(0)
        backbone = create_backbone(cfg)
        objective = _vivid(protos, targets)
        opt = torch.optim.AdamW([*backbone.parameters(), *objective.parameters()], lr=1e-3)
        for step in range(3):
            tokens = backbone.forward_features(images)
            out = objective(tokens, tokens[:, 0], _batch())
            if step == 0:
                first[name] = out["loss"].item()
            opt.zero_grad()
            out["loss"].backward()
            opt.step()
        final[name] = torch.cat([p.detach().flatten() for p in backbone.parameters()])
    assert len({round(v, 6) for v in first.values()}) == 3, first
    names = list(final)
    for i in range(3):
        for j in range(i + 1, 3):
            assert (final[names[i]] - final[names[j]]).abs().max() > 1e-6, (names[i], names[j])


def test_bce_ignores_uncertain_and_null():
    torch.manual_seed(0)
    loss = BCEObjective(32, 4)
    pooled = torch.randn(3, 32)
    batch = _batch()
    base = loss(None, pooled, batch)["loss"]
    other = batch["states"].clone()
    other[0, 3], other[1, 1] = NULL, U  # uncertain <-> null: still ignored
    assert torch.equal(loss(None, pooled, {**batch, "states": other})["loss"], base)
    other[0, 0] = A  # present -> absent: counts
    assert not torch.equal(loss(None, pooled, {**batch, "states": other})["loss"], base)


def test_state_classifier_predicts_four_states():
    torch.manual_seed(0)
    loss = StateClassifierObjective(32, 4)
    assert loss.head.out_features == 4 * 4
    pooled = torch.randn(3, 32)
    batch = _batch()
    base = loss(None, pooled, batch)["loss"]
    other = batch["states"].clone()
    other[0, 2] = U  # null is a class of its own: changing it changes the loss
    assert not torch.equal(loss(None, pooled, {**batch, "states": other})["loss"], base)


def test_registry_errors_and_prototype_order():
    with pytest.raises(KeyError, match="unknown objective 'mae'; known: .*'vivid'"):
        OBJECTIVES["mae"]
    with pytest.raises(ValueError, match="registered already"):
        OBJECTIVES.register("bce")(StateClassifierObjective)

    class Cache:  # field/state order of a cache differs from ours: select_prototypes reorders
        fields, states, manifest = ("b", "a"), ("uncertain", "absent", "present"), {}
        prototypes = torch.arange(2 * 3 * 1.0).view(2, 3, 1)

    out = select_prototypes(Cache, ("a", "b"))
    assert out[:, :, 0].tolist() == [[5.0, 4.0, 3.0], [2.0, 1.0, 0.0]]
    with pytest.raises(KeyError, match="no prototype"):
        select_prototypes(Cache, ("c",))


def test_vivid_online_trains_the_prefix_through_the_frozen_teacher(resources):
    from vivid_med.train import Student, trainable_state
    from vivid_med.ums import cxr_record, provenance, target_text

    torch.manual_seed(0)
    cfg = objective_config("vivid_online", spd={"groups": 2, "queries": 2, "heads": 2}, orth_weight=0.1, k_fields=None)
    objective = OBJECTIVES["vivid_online"].build(cfg, 32, resources)
    texts = [target_text(cxr_record({"edema": "present", "fracture": None}, "PA", provenance())),
             target_text(cxr_record({"cardiomegaly": "absent"}, None, provenance()))]
    tokens = torch.randn(2, 9, 32, requires_grad=True)
    out = objective(tokens, tokens[:, 0], {"target_text": texts})
    assert out["loss"].item() == pytest.approx((out["tok"] + 0.1 * out["orth"]).item(), rel=1e-6)
    out["loss"].backward()
    assert tokens.grad.abs().sum() > 0 and objective.projector.net[0].weight.grad is not None
    assert all(p.grad is None for p in objective.teacher.parameters())
    saved = trainable_state(Student(torch.nn.Identity(), objective))  # what checkpoints and exports keep
    assert saved and not any(".teacher." in k for k in saved)


def test_vivid_online_field_sampling_depends_only_on_the_sample_seed(resources):
    from vivid_med.ums import cxr_record, provenance, target_text

    torch.manual_seed(0)
    cfg = objective_config("vivid_online", spd={"groups": 2, "queries": 2, "heads": 2}, orth_weight=0.0,
                           k_fields=[1, 2], rare_field_prob=0.5)
    objective = OBJECTIVES["vivid_online"].build(cfg, 32, resources)
    states = {"edema": "present", "cardiomegaly": "absent", "fracture": "uncertain", "pneumonia": "present"}
    texts = [target_text(cxr_record(states, "PA", provenance()))] * 2
    tokens = torch.randn(2, 9, 32)
    batch = {"target_text": texts, "sample_seed": torch.tensor([3, 4])}
    first = objective(tokens, tokens[:, 0], batch)["tok"]
    objective(tokens, tokens[:, 0], {"target_text": texts})  # consumes the module's own generator
    again = objective(tokens, tokens[:, 0], batch)["tok"]  # as after a resume: same seeds, same fields
    assert again.item() == first.item()
    other = [objective(tokens, tokens[:, 0], {**batch, "sample_seed": torch.tensor([s, s + 1])})["tok"].item()
             for s in range(5, 12)]
    assert any(o != first.item() for o in other), "field sampling ignores the sample seed"
