"""Optional LLM proposer: a local instruction-tuned causal LM proposes the 14 states as JSON with evidence quotes.

The JSON is parsed with pydantic's ``model_validate_json``; each claimed field is located in the report, then
re-checked by the verifier (the quote must hold a lexicon mention whose negation/uncertainty context gives the
claimed state). Where the output is invalid or a claim unverifiable, the rule result stands and the reason is
recorded in ``provenance``. No Finding is re-derived from the merged fields.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, ValidationError

from vivid_med.fields import DISPLAY_NAMES, KEY_OF_DISPLAY

from .engine import MentionSpan, ExtractionResult, _derive_no_finding, extract_report
from .lexicon import Lexicon, load_lexicon, normalise
from .verify import span_states

PROMPT = (
    "Read the chest X-ray report and answer in JSON only. For each finding that the report mentions, give "
    '{{"<Finding>": {{"state": "present" | "absent" | "uncertain", "evidence": "<exact words from the report>"}}}}. '
    "Findings: {names}.\nReport: {report}\nJSON:"
)


class Claim(BaseModel):
    """One field's proposed state and the exact report words supporting it."""

    model_config = ConfigDict(extra="forbid")
    state: Literal["present", "absent", "uncertain"]
    evidence: str


class Proposal(BaseModel):
    """The LLM's JSON: display name -> claim (unknown names are rejected by validation)."""

    model_config = ConfigDict(extra="forbid")
    claims: dict[str, Claim]


def parse_proposal(raw: str) -> tuple[Proposal | None, str]:
    """``(Proposal, "")`` from the model's output, or ``(None, reason)``; reads the outermost ``{...}``."""
    a, b = raw.find("{"), raw.rfind("}")
    if a < 0 or b <= a:
        return None, "invalid JSON: no object in the output"
    try:
        prop = Proposal.model_validate_json(json.dumps({"claims": json.loads(raw[a:b + 1])}))
    except (ValidationError, json.JSONDecodeError, TypeError) as e:
        return None, f"invalid JSON: {str(e).splitlines()[0][:120]}"
    unknown = [k for k in prop.claims if k not in KEY_OF_DISPLAY or k == "No Finding"]
    if unknown:
        return None, f"invalid JSON: {len(unknown)} unknown finding key(s)"  # keys may be report words: not logged
    return prop, ""


def merge(text: str, rules: ExtractionResult, prop: Proposal, lexicon: Lexicon | None = None) -> ExtractionResult:
    """Rule result updated with every verifiable claim of ``prop``; reasons for the others in provenance."""
    lex = lexicon or load_lexicon()
    out = dataclasses.replace(rules, states=dict(rules.states), evidence=dict(rules.evidence),
                              provenance=dict(rules.provenance))
    norm = normalise(text)
    for name, claim in prop.claims.items():
        f = KEY_OF_DISPLAY[name]
        if claim.state == rules.states[f]:
            out.provenance[f] = f"{rules.provenance.get(f, '')}; llm agrees"
            continue
        start = text.find(claim.evidence) if claim.evidence.strip() else -1
        if start < 0:
            out.provenance[f] = f"{rules.provenance.get(f, '')}; llm rejected: evidence not found in the report"
            continue
        end = start + len(claim.evidence)
        si = next((i for i, (a, b) in enumerate(rules.sentences) if a <= start and end <= b), None)
        if si is None:
            out.provenance[f] = f"{rules.provenance.get(f, '')}; llm rejected: evidence not inside one usable sentence"
            continue
        sa, sb = rules.sentences[si]
        found = span_states(text, norm, lex, f, start, end, sa, sb)
        if claim.state not in found:
            why = f"evidence reads {sorted(found)}" if found else "no mention of the field in the evidence"
            out.provenance[f] = f"{rules.provenance.get(f, '')}; llm rejected: {why}, not {claim.state}"
            continue
        out.states[f] = claim.state
        out.evidence[f] = MentionSpan(si, start, end, sa, sb)
        out.provenance[f] = "llm: verified against the text"
    _derive_no_finding(out.states, out.evidence, out.provenance, out.sentences)
    return out


@dataclasses.dataclass
class LLMProposer:
    """Greedy JSON proposals from a causal LM. ``model``/``tokenizer``: any local HF causal LM and its tokenizer."""

    model: torch.nn.Module
    tokenizer: object
    max_new_tokens: int = 256

    def prompt(self, text: str) -> str:
        names = ", ".join(DISPLAY_NAMES[f] for f in DISPLAY_NAMES if f != "no_finding")
        msg = PROMPT.format(names=names, report=text)
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template([{"role": "user", "content": msg}], tokenize=False,
                                                      add_generation_prompt=True)
        return msg

    @torch.no_grad()
    def propose(self, text: str) -> str:
        """The model's raw output for one report (greedy, so deterministic)."""
        enc = self.tokenizer(self.prompt(text), return_tensors="pt")
        out = self.model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False,
                                  pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
        return self.tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)

    def extract(self, text: str) -> ExtractionResult:
        """Rule extraction, then the LLM's verified claims merged in (rule result stands where invalid)."""
        rules = extract_report(text)
        if rules.no_usable_section:
            return rules
        prop, reason = parse_proposal(self.propose(text))
        if prop is None:
            rules.provenance["_llm"] = f"rule result stands: {reason}"
            return rules
        return merge(text, rules, prop)


def load_proposer(model: str = "smollm2", max_new_tokens: int = 256) -> LLMProposer:
    """``smollm2`` (bundled GGUF, dequantised, about 20 s) or a local HF folder; never reaches the hub."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from vivid_med.teacher.convert import BUNDLED, bundled_path

    kw = {}
    if model in BUNDLED:
        path = bundled_path(model)
        source, kw = path.parent, {"gguf_file": path.name}
    else:
        source = Path(model).expanduser()
        if not source.is_dir():
            raise FileNotFoundError(f"LLM extractor model {model}: not a bundled name or a local folder")
    tok = AutoTokenizer.from_pretrained(source, local_files_only=True, **kw)
    net = AutoModelForCausalLM.from_pretrained(source, local_files_only=True, dtype=torch.float32, **kw).eval()
    return LLMProposer(net, tok, max_new_tokens)


__all__ = ["Claim", "LLMProposer", "Proposal", "load_proposer", "merge", "parse_proposal"]
