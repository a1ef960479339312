"""The mention lexicon (``schema/lexicon.yaml``) compiled to one regular expression per field and one for triggers."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from vivid_med.fields import FIELDS, check_fields

LEXICON_PATH = Path(__file__).resolve().parents[2] / "schema" / "lexicon.yaml"

from .context import EXCLUDE, HEDGED, MENTION, NORMAL, WEAK

#: Mention kinds: a ``mention`` asserts the finding (context decides its state), ``hedged`` names a sign that is
#: uncertain evidence of it ("vascular congestion" for edema), ``weak`` is an indirect sign that counts only when
#: nothing else in the report speaks of the field ("costophrenic blunting"), ``normal`` states it is absent,
#: ``exclude`` consumes look-alikes that are not the finding ("pericardial effusion", "breast mass").
MENTION_KINDS = (EXCLUDE, MENTION, HEDGED, WEAK, NORMAL)
#: Trigger kinds, in the order their alternatives are tried at one position (pseudo-triggers first). Phrases
#: starting with a letter get word boundaries; punctuation phrases (";", ",") are used as written.
TRIGGER_KINDS = ("pseudo", "hypothetical_post", "hypothetical_pre", "uncertain_post", "uncertain_pre",
                 "negation_post", "negation_pre", "strong_terminators", "terminators", "disjunction",
                 "listcomma_or", "listcomma", "comma")

#: Regex group name -> trigger kind (punctuation groups carry a "_p" suffix).
_KIND = {**{k: k for k in TRIGGER_KINDS}, **{f"{k}_p": k for k in TRIGGER_KINDS}}

_DEID = re.compile(r"X{2,}|_{2,}")
_TOKEN = re.compile(r"-a-|[a-z]+")


def normalise(text: str) -> str:
    """Lower-case ``text`` and mask de-identification tokens ("XXXX", "___") as "#"; same length as ``text``."""
    return _DEID.sub(lambda m: "#" * len(m.group()), text).lower()


_LOOKBEHIND = re.compile(r"(\(\?<[!=][^)]*\))")


def _phrase(p: str) -> str:
    """A lexicon phrase as a regex fragment: every literal space (outside lookbehinds) matches any run of
    whitespace and masked de-identification tokens, so "no XXXX effusion" reads as "no effusion"."""
    parts = _LOOKBEHIND.split(p)
    return "".join(x if i % 2 else x.replace(" ", r"[\s#]+") for i, x in enumerate(parts))


@dataclass(frozen=True)
class Lexicon:
    """Compiled lexicon: per-field mention regexes (group name -> kind), a trigger regex, the hierarchy."""

    version: int
    field_patterns: dict[str, re.Pattern]
    trigger_pattern: re.Pattern
    parents: dict[str, tuple[str, ...]]
    children: dict[str, tuple[str, ...]]
    anchors: dict[str, tuple[str, ...]]
    anchor_index: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = field(default_factory=dict)

    def sentence_fields(self, sentence: str) -> set[str]:
        """Fields worth scanning in one normalised sentence: an anchor starts one of its words (fields without
        anchors always)."""
        out = {f for f, a in self.anchors.items() if not a}
        for w in _TOKEN.findall(sentence):
            for anchor, fields in self.anchor_index.get(w[:2], ()):
                if w.startswith(anchor):
                    out.update(fields)
        return out

    def mentions(self, norm: str, field: str, start: int, end: int):
        """Yield ``(start, end, kind)`` of ``field``'s mentions in ``norm[start:end]``."""
        for m in self.field_patterns[field].finditer(norm, start, end):
            kind = m.lastgroup.split("_", 1)[0]
            if kind != EXCLUDE:
                yield m.start(), m.end(), kind

    def triggers(self, norm: str, start: int, end: int) -> list[tuple[int, int, str]]:
        """``(start, end, kind)`` of every context trigger in ``norm[start:end]``, in text order."""
        return [(m.start(), m.end(), _KIND[m.lastgroup]) for m in self.trigger_pattern.finditer(norm, start, end)]


def _field_regex(spec: dict) -> re.Pattern:
    alts = []
    for kind, key in ((EXCLUDE, "exclude"), (MENTION, "mentions"), (HEDGED, "hedged"), (WEAK, "weak"), (NORMAL, "normal")):
        for i, p in enumerate(spec.get(key, []) or []):
            alts.append(f"(?P<{kind}_{i}>{_phrase(p)})")
    return re.compile(r"(?<![\w-])(?:" + "|".join(alts) + r")(?![\w-])")


def _trigger_regex(spec: dict) -> re.Pattern:
    """One alternation: the word triggers of every kind (TRIGGER_KINDS order) inside one shared pair of word
    boundaries, then the punctuation triggers (";", ",") as groups ``<kind>_p``."""
    words, punct = [], []
    for kind in TRIGGER_KINDS:
        ws, ps = [], []
        for p in spec.get(kind, []) or []:
            (ws if p[0].isalpha() or p.startswith("(") else ps).append(_phrase(p))
        if ws:
            words.append(f"(?P<{kind}>" + "|".join(ws) + ")")
        if ps:
            punct.append(f"(?P<{kind}_p>" + "|".join(ps) + ")")
    return re.compile(r"(?<!\w)(?:" + "|".join(words) + r")(?!\w)" + "".join("|" + p for p in punct))


@lru_cache(maxsize=4)
def load_lexicon(path: str | Path = LEXICON_PATH) -> Lexicon:
    """Load and compile the lexicon at ``path`` (ValueError naming the file on an unknown field or bad regex)."""
    raw = yaml.safe_load(Path(path).read_text())
    fields = raw["fields"]
    try:
        check_fields(list(fields), f"{path}: fields")
        patterns = {f: _field_regex(spec) for f, spec in fields.items()}
        trig = _trigger_regex(raw["triggers"])
    except re.error as e:
        raise ValueError(f"{path}: bad regular expression: {e}") from e
    parents = {f: tuple(spec.get("parents", []) or []) for f, spec in fields.items()}
    for f, ps in parents.items():
        check_fields(list(ps), f"{path}: parents of {f}")
    children = {f: tuple(c for c in fields if f in parents[c]) for f in FIELDS}
    if "no_finding" in patterns:
        raise ValueError(f"{path}: no_finding is derived from the other fields and takes no mentions")
    anchors = {f: tuple(spec.get("anchors", []) or []) for f, spec in fields.items()}
    return Lexicon(int(raw.get("version", 0)), patterns, trig, parents, children, anchors, _anchor_index(anchors))


def _anchor_index(anchors: dict[str, tuple[str, ...]]) -> dict[str, tuple[tuple[str, tuple[str, ...]], ...]]:
    """First two letters -> ((anchor, fields), ...), so a word is checked against few anchors."""
    by_anchor: dict[str, list[str]] = {}
    for f, ws in anchors.items():
        for a in ws:
            by_anchor.setdefault(a, []).append(f)
    index: dict[str, list] = {}
    for a, fs in by_anchor.items():
        index.setdefault(a[:2], []).append((a, tuple(fs)))
    return {k: tuple(v) for k, v in index.items()}
