"""Rule-based report-text extractor (CheXpert-labeler kind): report text -> 14 field states with evidence spans.

    >>> text = "FINDINGS: Mild cardiomegaly. No pleural effusion."
    >>> r = extract_report(text)
    >>> r.states["cardiomegaly"], r.states["pleural_effusion"], verify(text, r)
    ('present', 'absent', [])

``ExtractionResult``: ``.states`` (14 fields -> state or None), ``.evidence`` (field -> ``MentionSpan`` with character
offsets into the original text of the mention and its sentence, for every non-null state), ``.no_usable_section``,
``.provenance`` (field -> what decided it), ``.sentences`` (sentence spans). ``verify(text, result)`` -> problems.
"""

from __future__ import annotations

from .engine import MentionSpan, ExtractionResult, extract_report
from .lexicon import load_lexicon
from .verify import verify

#: Bumped whenever rules or lexicon change the output (recorded in provenance by consumers).
EXTRACTOR_VERSION = f"rules-2.0+lexicon-{load_lexicon().version}"

__all__ = ["EXTRACTOR_VERSION", "MentionSpan", "ExtractionResult", "extract_report", "verify"]
