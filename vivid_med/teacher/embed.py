"""Teacher embeddings of UMS JSON: render after a prompt, run to one hidden layer, pool chosen tokens.

Pooled tokens are located with the tokenizer's character offsets, never with hard-coded token ids:
- ``name_state``: per field, the mean of its display-name tokens and the mean of its state-value tokens,
  weighted equally; fields weighted equally. In a causal LM the name tokens come before the state and
  cannot see it (they carry the finding's meaning); the state tokens see the name (they carry the state).
- ``name_tokens``: only the display names, fields weighted equally (encoders only: in a causal LM all
  states of a field would embed alike).
- ``all_tokens``: every token of the JSON; ``last_token``: its last token.
Each sequence is embedded alone (padding is masked and positions follow the mask), so an embedding does
not depend on its batch. In a causal LM the tokens after the last pooled one are not run.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import Tensor
from tqdm import tqdm

from vivid_med.fields import DISPLAY_NAMES, KEY_OF_DISPLAY, check_fields
from vivid_med.states import STATE_VALUES
from vivid_med.teacher.load import Teacher
from vivid_med.ums import cxr_record, provenance, target_text

#: Bump when templates or pooling change: caches and work shards made before are then refused.
EMBED_VERSION = "2"

PROMPT = "Read this chest X-ray and report every finding's state as UMS JSON."
TEMPLATES = ("chat", "plain")
POOLINGS = ("name_state", "name_tokens", "all_tokens", "last_token")
POOLED = {
    "name_state": "per field, mean of its display-name tokens and mean of its state-value tokens, weighted "
                  "equally (in a causal LM the name precedes the state and cannot see it; the state tokens see "
                  "the name); fields weighted equally",
    "name_tokens": "tokens of each field's display name, fields weighted equally",
    "all_tokens": "all tokens of the JSON",
    "last_token": "the last token of the JSON",
}

#: Semantic check pairs, fixed in advance (issue 4): clinically related vs unrelated findings.
RELATED = (("Edema", "Pleural Effusion"), ("Edema", "Cardiomegaly"), ("Pneumonia", "Consolidation"),
           ("Lung Opacity", "Consolidation"), ("Atelectasis", "Lung Opacity"))
UNRELATED = (("Fracture", "Edema"), ("Support Devices", "Pneumonia"), ("Fracture", "Pneumonia"),
             ("Fracture", "Cardiomegaly"), ("Pneumothorax", "Edema"))


class TemplateError(ValueError):
    """The tokenizer cannot render the prompt template (or cannot give character offsets)."""


def prototype_text(field: str, state: str) -> str:
    """UMS target JSON of a record whose only field is ``field`` in ``state`` (same rendering as targets)."""
    return target_text(cxr_record({field: state}, None, provenance()), [field])


def field_spans(answer: str, names: Sequence[str]) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Character spans (name, state value) of each display name's ``"Name":{"state":value}`` in ``answer``."""
    spans = []
    for name in names:
        m = re.search(rf'"({re.escape(name)})"\s*:\s*\{{\s*"state"\s*:\s*("[a-z]+"|null)', answer)
        if m is None:
            raise ValueError(f"field {name!r} not found as {{\"state\": ...}} in the target JSON")
        spans.append((m.span(1), m.span(2)))
    return spans


def render(tokenizer, template: str, prompt: str, answer: str) -> tuple[str, int]:
    """(full text, character offset of ``answer`` in it): ``answer`` as the reply to ``prompt``.

    ``chat``: the tokenizer's chat template (user prompt, assistant answer); ``plain``: prompt, newline, answer.
    """
    if template == "plain":
        return f"{prompt}\n{answer}", len(prompt) + 1
    if template != "chat":
        raise TemplateError(f"template {template!r}: expected one of {TEMPLATES}")
    if not getattr(tokenizer, "chat_template", None):
        raise TemplateError(f"template 'chat': tokenizer {type(tokenizer).__name__} has no chat template "
                            f"(use template: plain)")
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    start = text.rfind(answer) if isinstance(text, str) else -1
    if start < 0:
        raise TemplateError("template 'chat': the chat template does not reproduce the answer verbatim")
    return text, start


class Embedder:
    """Embeds UMS JSON answers with ``teacher``: float64 [N,D] from hidden layer ``teacher.layer`` (pooled in
    float64, whatever the model's dtype: a float64 model gives the same numbers on any CPU).

    ``forward_passes`` counts the sequences run through the model (one per embedded answer).
    """

    def __init__(self, teacher: Teacher, pooling: str, template: str, fields: Sequence[str],
                 prompt: str = PROMPT, padding_side: str = "right") -> None:
        if teacher.layer is None:
            raise ValueError("Embedder needs a teacher loaded with a layer (load_teacher(..., layer=k))")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling {pooling!r}: expected one of {POOLINGS}")
        if pooling == "name_tokens" and teacher.causal:
            raise ValueError("pooling name_tokens: in a causal LM the name tokens precede the state and "
                             "cannot see it (all states would embed alike); use name_state")
        if padding_side not in ("right", "left"):
            raise ValueError(f"padding_side {padding_side!r}: expected right or left")
        if not getattr(teacher.tokenizer, "is_fast", False):
            raise TemplateError(f"tokenizer {type(teacher.tokenizer).__name__} gives no character offsets "
                                f"(a fast tokenizer is needed)")
        self.teacher, self.pooling, self.template, self.prompt = teacher, pooling, template, prompt
        self.fields = check_fields(list(fields), "teacher fields")
        self.padding_side = padding_side
        self.forward_passes = 0
        self._check()

    @property
    def names(self) -> list[str]:
        return [DISPLAY_NAMES[f] for f in self.fields]

    def template_info(self) -> dict:
        """What the manifest records about rendering and pooling (compared when a cache is reused)."""
        example, _ = render(self.teacher.tokenizer, self.template, self.prompt, prototype_text(self.fields[0], STATE_VALUES[0]))
        return {"name": self.template, "prompt": self.prompt, "example": example, "pooled": POOLED[self.pooling]}

    def _check(self) -> None:
        """Fail before any real compute: the template renders, offsets exist, the model gives hidden states."""
        enc = self.encode([prototype_text(self.fields[0], STATE_VALUES[0])], [[DISPLAY_NAMES[self.fields[0]]]])[0]
        ids = torch.tensor([enc[0]], device=self.teacher.model.device)
        with torch.no_grad():
            out = self.teacher.model(input_ids=ids, output_hidden_states=True)
        hidden = getattr(out, "hidden_states", None)
        if hidden is None or len(hidden) != self.teacher.layer + 1:
            raise ValueError(f"teacher {self.teacher.name}: the model returns no hidden states "
                             f"(need {self.teacher.layer + 1}, got {None if hidden is None else len(hidden)})")

    def encode(self, answers: Sequence[str], names: Sequence[Sequence[str]]) -> list[tuple[list[int], list[float]]]:
        """Per answer: (token ids of the rendered text, pooling weight of each token; weights sum to 1)."""
        tok = self.teacher.tokenizer
        out = []
        for i, (answer, nm) in enumerate(zip(answers, names, strict=True)):
            text, a0 = render(tok, self.template, self.prompt, answer)
            enc = tok(text, add_special_tokens=self.template == "plain", return_offsets_mapping=True)
            offsets = enc["offset_mapping"]

            def tokens(a: int, b: int) -> list[int]:
                return [j for j, (s, e) in enumerate(offsets) if e > s and s < a0 + b and e > a0 + a]

            if self.pooling in ("all_tokens", "last_token"):
                groups = [tokens(0, len(answer))]
                groups = [groups[0][-1:]] if self.pooling == "last_token" else groups
            else:
                pairs = field_spans(answer, nm)
                groups = [g for n, v in pairs for g in ([tokens(*n), tokens(*v)] if self.pooling == "name_state"
                                                        else [tokens(*n)])]
            if not all(groups):
                raise ValueError(f"answer {i}: no token to pool ({self.pooling})")
            weights = [0.0] * len(offsets)
            for g in groups:
                for j in g:
                    weights[j] += 1.0 / (len(g) * len(groups))
            ids = enc["input_ids"]
            if self.teacher.causal:  # later tokens cannot change earlier ones: do not run them
                end = max(j for g in groups for j in g) + 1
                ids, weights = ids[:end], weights[:end]
            out.append((ids, weights))
        return out

    @torch.no_grad()
    def _forward(self, batch: list[tuple[list[int], list[float]]]) -> Tensor:
        """Pool a padded batch: [B,D] float64."""
        n = max(len(ids) for ids, _ in batch)
        pad_id = self.teacher.tokenizer.pad_token_id or 0
        ids = torch.full((len(batch), n), pad_id, dtype=torch.long)
        mask = torch.zeros(len(batch), n, dtype=torch.long)
        pool = torch.zeros(len(batch), n, dtype=torch.float64)
        for b, (tid, keep) in enumerate(batch):
            sl = slice(0, len(tid)) if self.padding_side == "right" else slice(n - len(tid), n)
            ids[b, sl], mask[b, sl], pool[b, sl] = torch.tensor(tid), 1, torch.tensor(keep, dtype=torch.float64)
        dev = self.teacher.model.device
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.teacher.model(input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev),
                                 output_hidden_states=True)
        self.forward_passes += len(batch)
        h = out.hidden_states[self.teacher.layer].double()  # [B,T,D]
        return torch.einsum("btd,bt->bd", h, pool.to(dev)).cpu()

    def embed(self, answers: Sequence[str], names: Sequence[Sequence[str]] | None = None, batch_size: int = 16,
              progress: bool = False, desc: str = "teacher") -> Tensor:
        """Embed answers (pooling over ``names``' spans; default: all fields) -> float64 [N,D]."""
        names = names if names is not None else [self.names] * len(answers)
        enc = self.encode(answers, names)
        order = sorted(range(len(enc)), key=lambda i: len(enc[i][0]))  # similar lengths share a batch
        out = torch.empty(len(enc), self.teacher.hidden_size, dtype=torch.float64)
        for s in tqdm(range(0, len(order), batch_size), desc=desc, disable=not progress, unit="batch"):
            idx = order[s:s + batch_size]
            out[idx] = self._forward([enc[i] for i in idx])
        return out

    def prototypes(self, batch_size: int = 16) -> Tensor:
        """Every (field, state) pair rendered alone -> float64 [F,S,D] (raw, not centred)."""
        pairs = [(f, s) for f in self.fields for s in STATE_VALUES]
        emb = self.embed([prototype_text(f, s) for f, s in pairs], [[DISPLAY_NAMES[f]] for f, _ in pairs], batch_size)
        return emb.view(len(self.fields), len(STATE_VALUES), -1)


def semantic_margin(prototypes: Tensor, fields: Sequence[str]) -> dict:
    """Mean cosine of RELATED minus UNRELATED field pairs; a field's vector is its prototypes' mean over states.

    prototypes: [F,S,D] (as stored, i.e. centred when the cache is). Returns related, unrelated, margin, pairs.
    """
    vec = torch.nn.functional.normalize(prototypes.float().mean(1), dim=-1)
    row = {f: i for i, f in enumerate(fields)}

    def cos(a: str, b: str) -> float:
        return float(vec[row[KEY_OF_DISPLAY[a]]] @ vec[row[KEY_OF_DISPLAY[b]]])

    rel = {f"{a} ~ {b}": cos(a, b) for a, b in RELATED}
    unrel = {f"{a} ~ {b}": cos(a, b) for a, b in UNRELATED}
    r, u = sum(rel.values()) / len(rel), sum(unrel.values()) / len(unrel)
    return {"related": r, "unrelated": u, "margin": r - u, "pairs": {**rel, **unrel}}
