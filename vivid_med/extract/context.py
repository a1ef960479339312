"""ConText-style negation, uncertainty and hypothetical scopes over one sentence's triggers.

A mention's state is decided by, in order:

1. a trigger overlapping the mention ("heart is not enlarged", "borderline heart size");
2. the triggers before it in its sentence, walking back: a *hypothetical* pre-trigger ("differential includes",
   "could obscure", "if", "to exclude") makes the mention blank (``None``: not a statement about the patient) up to
   a strong terminator ("but", "however", ";"); the nearest negation/uncertainty pre-trigger decides unless a
   terminator ("there is", "with", "which", ", mild ...") closed its scope first. Pseudo-triggers ("no change",
   "not only") match first and neutralise the words inside them;
3. the triggers after it within ``POST_WINDOW`` characters: a hypothetical post-trigger ("is in the
   differential", "due to overlying soft tissue", "nipple shadow") blanks it, across any but a strong
   terminator; else the first negation/uncertainty post-trigger ("is not seen",
   "cannot be excluded", "is within normal limits") decides, but not across a comma that starts a new clause:
   in "left basilar opacity, heart size is normal" the "is normal" belongs to "heart size". A comma list that
   ends in a conjunction ("effusion, consolidation, or pneumothorax is not seen") is one subject;
4. a disjunction ("atelectasis or scarring", "scarring/atelectasis") left undecided by 2 and 3 makes both sides
   uncertain (CheXpert's "XXX or YYY" pattern; LABELLING_GUIDE revision 2); "no effusion or pneumothorax" stays
   absent because the negation is found first.

Mention kinds (``schema/lexicon.yaml``): a ``mention`` takes the state above; a ``hedged`` mention names a sign
CheXpert codes as uncertain evidence of the finding ("vascular congestion" for edema), so its affirmed state is
uncertain; a ``normal`` mention states the finding absent ("heart size is normal") unless a hypothetical scope
blanks it; a ``weak`` mention is an indirect sign ("costophrenic angle blunting" for effusion) that takes its
context like a mention but only decides the field when no other mention of it does (the engine's job).
"""

from __future__ import annotations

PRESENT, ABSENT, UNCERTAIN = "present", "absent", "uncertain"
POST_WINDOW = 60

#: Mention kinds (lexicon groups); ``exclude`` matches are consumed and never reach the context.
MENTION, NORMAL, HEDGED, WEAK, EXCLUDE = "mention", "normal", "hedged", "weak", "exclude"

_NEG = {"negation_pre", "negation_post"}
_UNC = {"uncertain_pre", "uncertain_post"}
_HYP = {"hypothetical_pre", "hypothetical_post"}
_PRE = {"negation_pre", "uncertain_pre", "hypothetical_pre"}


def mention_state(start: int, end: int, triggers: list[tuple[int, int, str]],
                  kind: str = MENTION) -> tuple[str | None, str]:
    """``(state, cue)`` of the mention ``[start, end)`` of ``kind`` given its sentence's triggers (text order).

    ``state`` is None when the mention is hypothetical (blank). ``cue`` names what decided it: ``"affirmed"``,
    ``"normal phrase"`` or ``"<trigger kind>@<offset>"``.
    """
    st, cue = _context(start, end, triggers)
    if st is None:
        return None, cue
    if kind == NORMAL:
        return ABSENT, "normal phrase"
    if kind == HEDGED and st == PRESENT:
        return UNCERTAIN, "hedged mention"
    return st, cue


def _context(start: int, end: int, triggers: list[tuple[int, int, str]]) -> tuple[str | None, str]:
    inside = [t for t in triggers if t[0] < end and t[1] > start and (t[2] in _NEG or t[2] in _UNC or t[2] in _HYP)]
    if inside:
        t = (next((t for t in inside if t[2] in _HYP), None) or next((t for t in inside if t[2] in _UNC), None)
             or inside[0])
        return (None if t[2] in _HYP else UNCERTAIN if t[2] in _UNC else ABSENT), f"{t[2]}@{t[0]}"
    found: tuple[str, str] | None = None
    closed = disjoint = False  # disjoint: "X or Y" / "X/Y" -> uncertain unless a negation scopes over both
    for t in reversed([t for t in triggers if t[1] <= start]):
        kind = t[2]
        if kind == "strong_terminators":
            break
        if kind == "hypothetical_pre":
            return None, f"{kind}@{t[0]}"
        if found is not None or closed:
            continue  # keep walking back only to find a hypothetical scope
        if kind == "terminators":
            closed = True
        elif kind in ("disjunction", "listcomma_or"):
            disjoint = disjoint or (UNCERTAIN, f"{kind}@{t[0]}")
        elif kind in _UNC:
            found = (UNCERTAIN, f"{kind}@{t[0]}")
        elif kind == "negation_pre":
            found = (ABSENT, f"{kind}@{t[0]}")
    if found is not None:
        return found
    blocked = closed = False  # closed: a terminator or pre-trigger ended the negation/uncertainty scope
    for t in (t for t in triggers if t[0] >= end):
        kind = t[2]
        if kind == "strong_terminators" or t[0] - end > POST_WINDOW:
            break
        if kind == "hypothetical_post":  # an attribution ("..., which is due to overlying soft tissue")
            return None, f"{kind}@{t[0]}"
        if closed:
            continue
        if kind == "terminators" or kind in _PRE:
            closed = True
        elif kind == "comma":
            blocked = True
        elif kind in ("listcomma", "listcomma_or"):
            blocked = False
            if kind == "listcomma_or":
                disjoint = disjoint or (UNCERTAIN, f"{kind}@{t[0]}")
        elif kind == "disjunction":
            if blocked:
                closed = True
            else:
                disjoint = disjoint or (UNCERTAIN, f"{kind}@{t[0]}")
        elif kind in ("uncertain_post", "negation_post"):
            if blocked:
                closed = True
            else:
                return (UNCERTAIN if kind == "uncertain_post" else ABSENT), f"{kind}@{t[0]}"
    if disjoint:
        return disjoint
    return PRESENT, "affirmed"
