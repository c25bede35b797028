"""Which findings a clause names: vocabulary phrases, longest first, and normal statements.

The rules are under "Findings" in the package docstring; the phrases are in vocabulary.yaml.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from radzero.data.sentences.vocabulary import ABSENT, VOCABULARY


@dataclass(frozen=True)
class Span:
    """A matched phrase or cue inside one clause."""

    start: int
    end: int
    label: str  # canonical finding ("": a look-alike that is no finding) or cue kind
    extra: str  # location words inside a finding phrase, or a cue's direction
    fixed: str | None = None  # status of findings implied by a normal statement


def without_overlaps(ranked: list[Span]) -> list[Span]:
    """The spans, best first, that overlap no better one; in text order."""
    taken = bytearray(max((span.end for span in ranked), default=0))
    chosen = []
    for span in ranked:
        if not any(taken[span.start : span.end]):
            taken[span.start : span.end] = b"\x01" * (span.end - span.start)
            chosen.append(span)
    return sorted(chosen, key=lambda s: s.start)


def finding_spans(clause: str) -> list[Span]:
    """Vocabulary phrases (longest wins) and findings implied by normal statements."""
    spans = [Span(m.start(), m.end(), "", "") for m in VOCABULARY.not_findings.finditer(clause)]
    for name, pattern in VOCABULARY.phrases:
        for match in pattern.finditer(clause):
            spans.append(Span(match.start(), match.end(), name, match.groupdict().get("where", "")))
    spans = without_overlaps(sorted(spans, key=lambda s: (s.start - s.end, s.start)))
    for pattern, names in VOCABULARY.normal_statements:
        match = pattern.search(clause)
        if match:
            spans.extend(Span(match.start(), match.start(), name, "", ABSENT) for name in names)
    return sorted(spans, key=lambda s: s.start)


def canonical_finding(name: str) -> str | None:
    """The canonical vocabulary name of a finding, class name or synonym, or None if unknown.

    Case, underscores and plurals do not matter: "Effusion", "Pleural_Thickening", "Lung Opacity"
    and "enlarged heart" map to "pleural effusion", "pleural thickening", "opacity", "cardiomegaly".
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    text = re.sub(r"\s+", " ", name.replace("_", " ")).strip().lower()
    if text in VOCABULARY.class_aliases:
        return VOCABULARY.class_aliases[text]
    for canonical, pattern in VOCABULARY.phrases:
        if pattern.fullmatch(text):
            return canonical
    return None
