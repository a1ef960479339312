"""A fast regex sentence splitter returning character spans (never copies of the text)."""

from __future__ import annotations

import re

# A sentence runs to a full stop/?/! followed by whitespace (so "1.5 cm" and "XXXX.XXXX" stay whole) or a newline.
_SENT = re.compile(r"\S(?:[^\n]*?)(?:[.!?](?=\s|$)|(?=\n)|$)", re.S)


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` spans of the sentences of ``text[start:end]``, offsets into ``text``."""
    end = len(text) if end is None else end
    return [(m.start(), m.end()) for m in _SENT.finditer(text, start, end)]
