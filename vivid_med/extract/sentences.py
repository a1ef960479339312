"""A fast regex sentence splitter returning character spans (never copies of the text).

Reports are often hard-wrapped (MIMIC-CXR at ~78 columns: "No pleural effusion or\\n pneumothorax."), so a single
line break is whitespace inside a sentence. A sentence ends at a full stop / ? / ! followed by whitespace (so
"1.5 cm" and "XXXX.XXXX" stay whole) or run into a capitalised word ("limits.The lungs"), before a blank line, before a list item at a line start ("2. ..."), or
before an upper-case header line ("FINDINGS:"); section headers also end it because sections are split first.
"""

from __future__ import annotations

import re

#: What ends a sentence without punctuation: a blank line, a list marker or an upper-case header at a line start.
_BREAK = r"\n[ \t]*(?:\n|\d{1,2}[.)][ \t]|[A-Z][A-Z /&-]{2,40}:)"
#: A full stop run into the next word ends the sentence only between a lower-case word and a capitalised one
#: ("limits.The lungs"), never in "1.5 cm" or "XXXX.XXXX".
_RUN_ON = r"(?!(?<=[a-z][.!?])[A-Z][a-z])"
_SENT = re.compile(rf"\S(?:[^.!?\n]|\n(?!{_BREAK[2:]})|[.!?](?!\s|$){_RUN_ON})*(?:[.!?]|(?={_BREAK})|$)")


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` spans of the sentences of ``text[start:end]``, offsets into ``text``."""
    end = len(text) if end is None else end
    spans = []
    for m in _SENT.finditer(text, start, end):
        b = m.end()
        while text[b - 1].isspace():  # a sentence ending at its section's end: drop the trailing whitespace
            b -= 1
        spans.append((m.start(), b))
    return spans
