"""ConText-style negation and uncertainty scopes over one sentence's triggers.

A mention's state is decided by, in order: a negation/uncertainty trigger overlapping the mention ("heart is not
enlarged"), the nearest pre-trigger before it within its clause (a terminator such as "but", ";" or
"there is" closes the scope; pseudo-negations such as "no change" are skipped), then the nearest post-trigger
after it within ``POST_WINDOW`` characters ("pneumothorax is not seen", "effusion cannot be excluded").
"""

from __future__ import annotations

PRESENT, ABSENT, UNCERTAIN = "present", "absent", "uncertain"
POST_WINDOW = 60

_NEG = {"negation_pre", "negation_post"}
_UNC = {"uncertain_pre", "uncertain_post"}


def mention_state(start: int, end: int, triggers: list[tuple[int, int, str]]) -> tuple[str, str]:
    """``(state, cue)`` of the mention ``[start, end)`` given the triggers of its sentence (text order).

    ``cue`` names what decided it: ``"affirmed"``, or ``"<trigger kind>@<offset>"``.
    """
    inside = [t for t in triggers if t[0] < end and t[1] > start and (t[2] in _NEG or t[2] in _UNC)]
    if inside:
        t = next((t for t in inside if t[2] in _UNC), inside[0])
        return (UNCERTAIN if t[2] in _UNC else ABSENT), f"{t[2]}@{t[0]}"
    for t in reversed([t for t in triggers if t[1] <= start]):
        kind = t[2]
        if kind == "terminators":
            break
        if kind in _UNC:
            return UNCERTAIN, f"{kind}@{t[0]}"
        if kind == "negation_pre":
            return ABSENT, f"{kind}@{t[0]}"
    for t in (t for t in triggers if t[0] >= end):
        kind = t[2]
        if kind == "terminators" or t[0] - end > POST_WINDOW or kind in ("negation_pre", "uncertain_pre"):
            break
        if kind == "uncertain_post":
            return UNCERTAIN, f"{kind}@{t[0]}"
        if kind == "negation_post":
            return ABSENT, f"{kind}@{t[0]}"
    return PRESENT, "affirmed"
