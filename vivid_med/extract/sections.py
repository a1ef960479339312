"""Report sections: FINDINGS and IMPRESSION (text without any header is one findings section)."""

from __future__ import annotations

import re

_NAMES = (r"findings and impressions?|findings|impressions?|conclusions?|comparisons?|indications?|history"
          r"|clinical history|technique|examination|exam|reason for (?:exam|study)|recommendations?|notification"
          r"|comments?|procedure")
#: Headers the extractor recognises (only the USABLE ones are read): any case at a line start or after a full
#: stop, or upper case anywhere after whitespace ("... no effusion IMPRESSION: normal chest").
_HEADER = re.compile(
    rf"(?m)(?:(?:^|(?<=[.\n]))[ \t]*(?i:(?P<name>{_NAMES}))|(?<=\s)(?P<upper>{_NAMES.upper().replace('(?:', '(?:')}))"
    r"[ \t]*:"
)
USABLE = {"findings": "findings", "findings and impression": "findings", "findings and impressions": "findings",
          "impression": "impression", "impressions": "impression", "conclusion": "impression",
          "conclusions": "impression"}


def find_sections(text: str) -> tuple[list[tuple[str, int, int]], bool]:
    """Return ``([(name, start, end), ...], has_headers)``: the usable non-empty sections' character spans.

    No header at all -> the whole (non-blank) text is one ``findings`` section. With headers, only FINDINGS and
    IMPRESSION (or CONCLUSION) bodies are usable; empty bodies are dropped, so headers whose usable sections are
    all empty give ``[]`` (the caller reports ``no_usable_section``). Text before the first header is read as
    findings when that header is a usable one and the text is more than an upper-case title ("Heart size normal.
    IMPRESSION: ..." keeps its findings; "FINAL REPORT" before "EXAMINATION:" is not read).
    """
    heads = list(_HEADER.finditer(text))
    if not heads:
        return ([("findings", 0, len(text))] if text.strip() else []), False
    out = []
    lead = text[:heads[0].start()]
    first = USABLE.get(" ".join((heads[0].group("name") or heads[0].group("upper")).lower().split()))
    if first and lead.strip() and any(c.islower() for c in lead):
        out.append(("findings", 0, heads[0].start()))
    for h, nxt in zip(heads, heads[1:] + [None]):
        name = USABLE.get(" ".join((h.group("name") or h.group("upper")).lower().split()))
        end = nxt.start() if nxt is not None else len(text)
        if name and text[h.end():end].strip():
            out.append((name, h.end(), end))
    return out, True
