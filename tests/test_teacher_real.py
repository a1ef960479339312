"""The bundled real teachers: SmolLM2-135M-Instruct (default, causal LM) and MiniLM (encoder). Slow."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from vivid_med.fields import PRETRAIN_FIELDS
from vivid_med.teacher.convert import convert
from vivid_med.teacher.embed import Embedder, semantic_margin
from vivid_med.teacher.load import load_teacher
from vivid_med.teacher.online import OnlineTeacherLoss
from vivid_med.ums import cxr_record, provenance, target_text

REPO = Path(__file__).resolve().parents[1]
DEFAULTS = yaml.safe_load((REPO / "params.yaml").read_text())["teacher"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory) -> Path:
    """models/teacher/smollm2 when the stage has run, else converted once into a scratch folder (~25 s)."""
    built = REPO / "models/teacher/smollm2"
    if (built / "model.safetensors").is_file():
        return built
    return convert("smollm2", tmp_path_factory.mktemp("teacher") / "smollm2")


def margin(folder: Path, variant: str, seed: int = 0) -> float:
    teacher = load_teacher(folder, variant, layer=DEFAULTS["layer"], seed=seed)
    protos = Embedder(teacher, DEFAULTS["pooling"], DEFAULTS["template"], PRETRAIN_FIELDS).prototypes()
    return semantic_margin(protos - protos.reshape(-1, protos.shape[-1]).mean(0), PRETRAIN_FIELDS)["margin"]


def test_related_findings_closer_than_unrelated_with_default_pooling(smollm2):
    pretrained = margin(smollm2, "pretrained")
    random = [margin(smollm2, "random", seed) for seed in range(8)]  # one random draw is noisy (+-0.05)
    print(f"semantic margin: pretrained {pretrained:+.4f}, random seeds 0-7 {[round(r, 3) for r in random]}")
    assert pretrained > 0
    assert pretrained > sum(random) / len(random)


def test_online_loss_on_smollm2(smollm2):
    teacher = load_teacher(smollm2, head=True)
    loss_fn = OnlineTeacherLoss(teacher.model, teacher.tokenizer, k_fields=[4, 5, 6], rare_field_prob=0.6)
    states = [{"edema": "present", "pleural_effusion": "present", "cardiomegaly": "absent", "fracture": "absent"},
              {"pneumonia": "uncertain", "consolidation": "present", "lung_opacity": "present", "edema": "absent"},
              {"support_devices": "present", "pneumothorax": "absent", "atelectasis": "present", "fracture": "absent"}]
    targets = [target_text(cxr_record(s, "PA", provenance())) for s in states]
    head = teacher.model.get_output_embeddings().weight.clone()
    prefix = torch.randn(3, 9, teacher.hidden_size, requires_grad=True)
    out = loss_fn(prefix, targets)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and 2 < out["loss"].item() < 20 and out["n_tokens"] > 0
    assert prefix.grad.abs().sum() > 0
    assert torch.equal(teacher.model.get_output_embeddings().weight, head)
    assert all(p.grad is None for p in teacher.model.parameters())


def test_minilm_encoder_teacher(tmp_path):
    folder = convert("minilm", tmp_path / "minilm")
    teacher = load_teacher(folder, layer=4)
    assert not teacher.causal and teacher.hidden_size == 384
    emb = Embedder(teacher, "name_tokens", "plain", PRETRAIN_FIELDS)  # an encoder's name tokens see the state
    protos = emb.prototypes()
    assert (protos[:, 0] - protos[:, 1]).abs().amax(-1).min() > 1e-3
    assert semantic_margin(protos - protos.reshape(-1, 384).mean(0), PRETRAIN_FIELDS)["margin"] > 0.05
    with pytest.raises(ValueError, match="no chat template"):
        Embedder(teacher, "name_tokens", "chat", PRETRAIN_FIELDS)
