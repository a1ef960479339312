"""The paper's online mode: a frozen causal LM reads a soft visual prefix, the prompt and the target JSON.

Loss: next-token cross-entropy on the target JSON tokens, teacher forcing. Answerability-aware masking
gives weight 0 to the state-value tokens of null fields (spans found with the tokenizer's offsets).
Field-query sampling (optional): per sample ask for k answerable fields, forcing a rare one with some
probability; the prompt names the requested fields and the target holds only them.
Gradients reach the prefix; the teacher's parameters are frozen and never change.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vivid_med.fields import DISPLAY_NAMES, RARE_FIELDS
from vivid_med.teacher.embed import PROMPT, field_spans, render


class OnlineTeacherLoss(nn.Module):
    """Frozen-LM token loss for a soft prefix.

    forward(prefix [B,P,H], targets: B target JSON strings) -> {"loss": scalar, "n_tokens": weighted token count}.
    ``k_fields`` (e.g. [4, 5, 6]) switches field-query sampling on; ``rare_field_prob`` forces a rare field.
    """

    def __init__(self, model: nn.Module, tokenizer, template: str = "chat", prompt: str = PROMPT,
                 answerability_mask: bool = True, k_fields: Sequence[int] | None = None,
                 rare_field_prob: float = 0.0, rare_fields: Sequence[str] = RARE_FIELDS, seed: int = 0) -> None:
        super().__init__()
        if model.get_output_embeddings() is None:
            raise ValueError(f"{type(model).__name__} has no LM head (load the teacher with head=True)")
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("online teacher: a fast tokenizer (character offsets) is needed")
        render(tokenizer, template, prompt, "{}")  # raises TemplateError before any compute
        self.lm = model.requires_grad_(False).eval()
        self.tokenizer, self.template, self.prompt = tokenizer, template, prompt
        self.answerability_mask = answerability_mask
        self.k_fields = list(k_fields) if k_fields else None
        self.rare_field_prob = rare_field_prob
        self.rare_names = {DISPLAY_NAMES[f] for f in rare_fields}
        self.rng = random.Random(seed)

    def train(self, mode: bool = True) -> "OnlineTeacherLoss":
        super().train(mode)
        self.lm.eval()  # frozen teacher: no dropout, ever
        return self

    @property
    def hidden_size(self) -> int:
        return self.lm.get_input_embeddings().weight.shape[1]

    def sample_fields(self, target: str, rng: random.Random | None = None) -> tuple[str, str]:
        """(prompt, target) for one sample: all fields, or k sampled answerable ones (rare forced with prob p).

        ``rng``: the sample's own generator (so a resumed run samples what an uninterrupted one did); default
        the module's."""
        if self.k_fields is None:
            return self.prompt, target
        rng = rng or self.rng
        doc = json.loads(target)
        findings: dict = doc["findings"]
        answerable = [n for n, v in findings.items() if v["state"] is not None] or list(findings)
        k = min(rng.choice(self.k_fields), len(answerable))
        rare = [n for n in answerable if n in self.rare_names]
        chosen = [rng.choice(rare)] if rare and rng.random() < self.rare_field_prob else []
        rest = [n for n in answerable if n not in chosen]
        chosen += rng.sample(rest, k - len(chosen))
        doc["findings"] = {n: v for n, v in findings.items() if n in chosen}  # schema order kept
        prompt = f"{self.prompt} Fields: {', '.join(doc['findings'])}."
        return prompt, json.dumps(doc, separators=(",", ":"), ensure_ascii=False)

    def encode(self, prompt: str, target: str) -> tuple[list[int], list[int], list[float]]:
        """(token ids up to the end of the target, indices of target tokens, their loss weights)."""
        text, a0 = render(self.tokenizer, self.template, prompt, target)
        a1 = a0 + len(target)
        enc = self.tokenizer(text[:a1], add_special_tokens=self.template == "plain", return_offsets_mapping=True)
        nulls = []
        if self.answerability_mask:
            doc = json.loads(target)
            names = [n for n, v in doc.get("findings", {}).items() if v.get("state") is None]
            nulls = [(a0 + v[0], a0 + v[1]) for _, v in field_spans(target, names)]
        idx, weights = [], []
        for j, (s, e) in enumerate(enc["offset_mapping"]):
            if e > a0 and e > s and j > 0:
                idx.append(j)
                weights.append(0.0 if any(s < b and e > a for a, b in nulls) else 1.0)
        if not idx:
            raise ValueError("online teacher: the target JSON has no tokens")
        return enc["input_ids"], idx, weights

    def forward(self, prefix: Tensor, targets: Sequence[str], seeds: Sequence[int] | None = None) -> dict[str, Tensor]:
        b, p, h = prefix.shape
        if h != self.hidden_size:
            raise ValueError(f"prefix width {h} != teacher hidden size {self.hidden_size}")
        if len(targets) != b:
            raise ValueError(f"{b} prefixes but {len(targets)} targets")
        rngs = [random.Random(s) for s in seeds] if seeds is not None else [self.rng] * b
        enc = [self.encode(*self.sample_fields(t, r)) for t, r in zip(targets, rngs)]
        n = p + max(len(ids) for ids, _, _ in enc)
        dev, emb = prefix.device, self.lm.get_input_embeddings()
        ids = torch.zeros(b, n - p, dtype=torch.long, device=dev)
        mask = torch.zeros(b, n, dtype=torch.long, device=dev)
        rows, pos, labels, weights = [], [], [], []
        for i, (tid, idx, w) in enumerate(enc):
            ids[i, :len(tid)] = torch.tensor(tid, device=dev)
            mask[i, :p + len(tid)] = 1
            rows += [i] * len(idx)
            pos += [p + j - 1 for j in idx]  # the logits at position t predict token t+1
            labels += [tid[j] for j in idx]
            weights += w
        x = torch.cat([prefix.to(emb.weight.dtype), emb(ids)], dim=1)  # [B, P+T, H]
        out = self.lm.base_model(inputs_embeds=x, attention_mask=mask, use_cache=False)
        hid = out.last_hidden_state[torch.tensor(rows, device=dev), torch.tensor(pos, device=dev)]  # [N, H]
        logits = self.lm.get_output_embeddings()(hid).float()
        ce = F.cross_entropy(logits, torch.tensor(labels, device=dev), reduction="none")
        w = torch.tensor(weights, device=dev)
        return {"loss": (ce * w).sum() / w.sum().clamp(min=1.0), "n_tokens": w.sum()}
