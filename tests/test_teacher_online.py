"""Online (soft-prefix) teacher loss on tiny random Llama and Qwen2 causal LMs."""

from __future__ import annotations

import json

import pytest
import torch

from tiny_teacher import write_tiny
from vivid_med.teacher.embed import TemplateError
from vivid_med.teacher.load import load_teacher
from vivid_med.teacher.online import OnlineTeacherLoss
from vivid_med.ums import cxr_record, provenance, target_text

STATES = {"edema": "present", "cardiomegaly": "absent", "fracture": "uncertain", "pneumonia": "present",
          "atelectasis": "absent", "lung_lesion": "present"}
TARGETS = [target_text(cxr_record(STATES, "PA", provenance())),
           target_text(cxr_record({"pleural_effusion": "present"}, None, provenance()))]


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def teacher(request, tmp_path_factory):
    folder = write_tiny(tmp_path_factory.mktemp(request.param) / request.param, arch=request.param, layers=2)
    teacher = load_teacher(folder, head=True)
    teacher.folder = folder
    return teacher


def test_gradients_reach_prefix_and_teacher_never_changes(teacher):
    loss_fn = OnlineTeacherLoss(teacher.model, teacher.tokenizer)
    before = {k: v.clone() for k, v in teacher.model.state_dict().items()}
    prefix = torch.randn(2, 5, teacher.hidden_size, requires_grad=True)
    opt = torch.optim.SGD([prefix], lr=1.0)
    losses = []
    for _ in range(5):
        out = loss_fn(prefix, TARGETS)
        opt.zero_grad()
        out["loss"].backward()
        assert prefix.grad is not None and prefix.grad.abs().sum() > 0
        opt.step()
        losses.append(out["loss"].item())
    assert losses[-1] < losses[0]  # the prefix alone can lower the teacher's loss
    assert all(p.grad is None and not p.requires_grad for p in teacher.model.parameters())
    for k, v in teacher.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    loss_fn.train()
    assert not teacher.model.training


def test_null_state_tokens_weigh_zero(teacher):
    loss_fn = OnlineTeacherLoss(teacher.model, teacher.tokenizer)
    ids, idx, w = loss_fn.encode(loss_fn.prompt, TARGETS[1])
    zero = teacher.tokenizer.decode([ids[j] for j, x in zip(idx, w) if x == 0])
    kept = teacher.tokenizer.decode([ids[j] for j, x in zip(idx, w) if x == 1])
    assert zero.replace("}", "") == "null" * 11  # the 11 null findings' state values, nothing else
    assert "present" in kept and "Pleural Effusion" in kept and '"study_view":null' in kept
    unmasked = OnlineTeacherLoss(teacher.model, teacher.tokenizer, answerability_mask=False)
    assert min(unmasked.encode(loss_fn.prompt, TARGETS[1])[2]) == 1.0


def test_field_query_sampling(teacher):
    loss_fn = OnlineTeacherLoss(teacher.model, teacher.tokenizer, k_fields=[4, 5], rare_field_prob=1.0, seed=3)
    answerable = {"Edema", "Cardiomegaly", "Fracture", "Pneumonia", "Atelectasis", "Lung Lesion"}
    rare = {"Fracture", "Pneumonia", "Lung Lesion", "Cardiomegaly"}
    for _ in range(20):
        prompt, target = loss_fn.sample_fields(TARGETS[0])
        asked = set(json.loads(target)["findings"])
        assert len(asked) in (4, 5) and asked <= answerable and asked & rare
        assert all(name in prompt for name in asked)
    again = OnlineTeacherLoss(teacher.model, teacher.tokenizer, k_fields=[4, 5], rare_field_prob=1.0, seed=3)
    loss_fn.rng.seed(3)
    assert [loss_fn.sample_fields(TARGETS[0]) for _ in range(3)] == [again.sample_fields(TARGETS[0]) for _ in range(3)]


def test_clear_errors(teacher):
    loss_fn = OnlineTeacherLoss(teacher.model, teacher.tokenizer)
    with pytest.raises(ValueError, match="prefix width"):
        loss_fn(torch.zeros(2, 3, teacher.hidden_size + 1), TARGETS)
    with pytest.raises(TemplateError):
        OnlineTeacherLoss(teacher.model, teacher.tokenizer, template="nonsense")
    with pytest.raises(ValueError, match="no LM head"):
        OnlineTeacherLoss(load_teacher(teacher.folder, layer=1).model, teacher.tokenizer)
