"""Independent re-check of an ExtractionResult against the report text (also used on LLM proposals)."""

from __future__ import annotations

from vivid_med.fields import FIELDS
from vivid_med.states import STATE_VALUES

from .context import mention_state
from .engine import NOT_PATHOLOGY, POSITIVE, ExtractionResult
from .lexicon import Lexicon, load_lexicon, normalise
from .sections import find_sections
from .sentences import split_sentences


def _descendants(lex: Lexicon, f: str) -> list[str]:
    out = [f]
    for c in lex.children.get(f, ()):
        out += _descendants(lex, c)
    return out


def span_states(text: str, norm: str, lex: Lexicon, field: str, a: int, b: int, sa: int, sb: int) -> set[str]:
    """States of every mention of ``field`` (or a descendant in the hierarchy) inside ``[a, b)`` of sentence ``[sa, sb)``."""
    trig = lex.triggers(norm, sa, sb)
    out = set()
    for f in _descendants(lex, field):
        if f not in lex.field_patterns:
            continue
        for ms, me, kind in lex.mentions(norm, f, a, b):
            st = mention_state(ms, me, trig, kind)[0]
            if st is not None:  # hypothetical mentions support no state
                out.add(st)
    return out


def verify(text: str, result: ExtractionResult, lexicon: Lexicon | None = None) -> list[str]:
    """Problems found re-checking ``result`` against ``text`` (empty list: every span exists and agrees).

    Checks: all 14 keys with valid states; evidence exactly for the non-null states; each span lies in the text
    and inside its sentence, which is the ``sentence_index``-th sentence of the usable sections; the span holds a
    mention of the field (or of a child field) whose negation/uncertainty context gives the claimed state;
    No Finding agrees with the other fields.
    """
    lex = lexicon or load_lexicon()
    problems = []
    if set(result.states) != set(FIELDS):
        return [f"states keys {sorted(result.states)} are not the 14 fields"]
    for f, st in result.states.items():
        if st is not None and st not in STATE_VALUES:
            problems.append(f"{f}: invalid state {st!r}")
        if (st is None) == (f in result.evidence):
            problems.append(f"{f}: state {st!r} but evidence {'present' if f in result.evidence else 'missing'}")
    if result.no_usable_section:
        if any(st is not None for st in result.states.values()):
            problems.append("no_usable_section but some state is non-null")
        return problems
    sections, _ = find_sections(text)
    sents = [s for _, a, b in sections for s in split_sentences(text, a, b)]
    norm = normalise(text)
    for f, ev in result.evidence.items():
        st = result.states.get(f)
        if st is None:
            continue
        if not (0 <= ev.sentence_start <= ev.start < ev.end <= ev.sentence_end <= len(text)):
            problems.append(f"{f}: span {ev.start}:{ev.end} not inside sentence {ev.sentence_start}:{ev.sentence_end}")
            continue
        if not (0 <= ev.sentence_index < len(sents)) or sents[ev.sentence_index] != (ev.sentence_start, ev.sentence_end):
            problems.append(f"{f}: sentence {ev.sentence_index} is not at {ev.sentence_start}:{ev.sentence_end}")
            continue
        if f == "no_finding":
            continue
        found = span_states(text, norm, lex, f, ev.start, ev.end, ev.sentence_start, ev.sentence_end)
        if not found:
            problems.append(f"{f}: no mention of the field in its evidence span")
        elif st not in found:
            problems.append(f"{f}: evidence reads {sorted(found)}, not {st}")
    nf = result.states.get("no_finding")
    positive = [f for f in FIELDS if f not in NOT_PATHOLOGY and result.states[f] in POSITIVE]
    if nf is not None and (nf in POSITIVE) == bool(positive):
        problems.append(f"no_finding: {nf} disagrees with positive fields {positive}")
    return problems
