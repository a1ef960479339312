"""The rule extractor: sections -> sentences -> lexicon mentions -> context -> per-field conflict resolution."""

from __future__ import annotations

from dataclasses import dataclass, field

from vivid_med.fields import FIELDS

from .context import ABSENT, PRESENT, UNCERTAIN, WEAK, mention_state
from .lexicon import Lexicon, load_lexicon, normalise
from .sections import find_sections
from .sentences import split_sentences

#: Higher wins when mentions of one field disagree across sentences (CheXpert's aggregation).
RANK = {None: 0, ABSENT: 1, UNCERTAIN: 2, PRESENT: 3}
POSITIVE = (PRESENT, UNCERTAIN)
#: Fields No Finding ignores (CheXpert: No Finding = no pathology other than support devices).
NOT_PATHOLOGY = ("no_finding", "support_devices")


@dataclass(frozen=True)
class MentionSpan:
    """Where a state comes from: character offsets into the ORIGINAL text of the mention and of its sentence."""

    sentence_index: int
    start: int
    end: int
    sentence_start: int
    sentence_end: int


@dataclass
class ExtractionResult:
    """States for all 14 fields (None = not answerable), evidence for every non-null state, provenance notes."""

    states: dict[str, str | None]
    evidence: dict[str, MentionSpan]
    no_usable_section: bool
    provenance: dict[str, str] = field(default_factory=dict)
    sentences: list[tuple[int, int]] = field(default_factory=list)


def empty_result(no_usable_section: bool, reason: str = "") -> ExtractionResult:
    """All-null result (nothing answerable)."""
    prov = {"_report": reason} if reason else {}
    return ExtractionResult({f: None for f in FIELDS}, {}, no_usable_section, prov)


def extract_report(text: str, lexicon: Lexicon | None = None, hierarchy: bool = True) -> ExtractionResult:
    """Structure one report's text into the 14 field states with evidence spans (see module docstring).

    ``hierarchy``: propagate a positive child to its parents (CheXpert's convention, the default); False leaves
    each field to its own mentions (for label sets coded without the hierarchy).
    """
    if not isinstance(text, str):
        raise TypeError(f"extract_report: expected str, got {type(text).__name__}")
    if not text.strip():
        return empty_result(True, "empty report")
    lex = lexicon or load_lexicon()
    sections, _ = find_sections(text)
    if not sections:
        return empty_result(True, "headers present but every FINDINGS/IMPRESSION section is empty or missing")
    norm = normalise(text)
    sents: list[tuple[int, int]] = []
    for _, a, b in sections:
        sents.extend(split_sentences(text, a, b))
    if not sents:
        return empty_result(True, "no sentence in the usable sections")
    sent_norm = [norm[a:b] for a, b in sents]
    trig_cache: dict[int, list[tuple[int, int, str]]] = {}
    states: dict[str, str | None] = {f: None for f in FIELDS}
    evidence: dict[str, MentionSpan] = {}
    prov: dict[str, str] = {}
    weak: dict[str, tuple[str, MentionSpan, str]] = {}  # indirect signs: used only where nothing else decided
    for si, (a, b) in enumerate(sents):
        for f in lex.sentence_fields(sent_norm[si]):  # fast gate: only fields with an anchor in the sentence
            for ms, me, kind in lex.mentions(norm, f, a, b):
                if si not in trig_cache:
                    trig_cache[si] = lex.triggers(norm, a, b)
                st, cue = mention_state(ms, me, trig_cache[si], kind)
                if kind == WEAK:
                    if RANK[st] > RANK[weak.get(f, (None,))[0]]:
                        weak[f] = (st, MentionSpan(si, ms, me, a, b), f"{cue} (indirect sign)")
                elif RANK[st] > RANK[states[f]]:  # a hypothetical (None) mention never wins
                    states[f] = st
                    evidence[f] = MentionSpan(si, ms, me, a, b)
                    prov[f] = cue
    for f, (st, ev, cue) in weak.items():
        if states[f] is None:
            states[f], evidence[f], prov[f] = st, ev, cue
    if hierarchy:
        _propagate(lex, states, evidence, prov)
    _derive_no_finding(states, evidence, prov, sents)
    return ExtractionResult(states, evidence, False, prov, sents)


def _propagate(lex: Lexicon, states, evidence, prov) -> None:
    """Hierarchy: a present/uncertain child makes its parents at least as positive (evidence = the child's)."""
    changed = True
    while changed:
        changed = False
        for child, parents in lex.parents.items():
            if states[child] not in POSITIVE:
                continue
            for p in parents:
                if RANK[states[child]] > RANK[states[p]]:
                    states[p] = states[child]
                    evidence[p] = evidence[child]
                    prov[p] = f"from {child}"
                    changed = True


def _derive_no_finding(states, evidence, prov, sents) -> None:
    """No Finding: present iff no pathology field is present/uncertain (support devices do not count)."""
    positive = [f for f in FIELDS if f not in NOT_PATHOLOGY and states[f] in POSITIVE]
    if positive:
        states["no_finding"] = ABSENT
        evidence["no_finding"] = evidence[positive[0]]
        prov["no_finding"] = f"derived: {positive[0]} is {states[positive[0]]}"
    else:
        states["no_finding"] = PRESENT
        a, b = sents[0]
        evidence["no_finding"] = MentionSpan(0, a, b, a, b)
        prov["no_finding"] = "derived: no pathology mentioned as present or uncertain"
