"""Negation and hedge cues in a clause and the status they give each finding.

The rules are under "Negation and uncertainty" in the package docstring; the cues are in
vocabulary.yaml.
"""

from __future__ import annotations

import re

from radzero.data.sentences.findings import Span, without_overlaps
from radzero.data.sentences.vocabulary import (
    ABSENT,
    BACKWARD,
    BOTH,
    FORWARD,
    HYPOTHETICAL,
    PRESENT,
    UNCERTAIN,
    VOCABULARY,
)


def cue_spans(clause: str, findings: list[Span]) -> list[Span]:
    """Negation and hedge cues; a hedge right after a negation (no finding between) is dropped."""
    ranked = []
    for rank, (pattern, kind, direction) in enumerate(VOCABULARY.cues):
        for match in pattern.finditer(clause):
            ranked.append((match.start() - match.end(), rank, Span(*match.span(), kind, direction)))
    ranked.sort(key=lambda item: (item[0], item[1], item[2].start))
    kept: list[Span] = []
    for cue in without_overlaps([span for _, _, span in ranked]):
        previous = kept[-1] if kept else None
        if (
            previous is not None
            and cue.label == UNCERTAIN
            and cue.extra == FORWARD
            and previous.label == ABSENT
            and previous.extra == FORWARD
            and not any(previous.end <= f.start < cue.start for f in findings if f.label)
        ):
            continue
        kept.append(cue)
    return kept


def _backward_cue(finding: Span, findings: list[Span], cues: list[Span]) -> Span | None:
    """The nearest cue after a finding that reaches back to it, if any.

    A forward cue in between blocks it, and "X versus Y" reaches back to X only.
    """
    for cue in cues:
        if cue.start < finding.end:
            continue
        if cue.extra == FORWARD:
            return None
        if cue.extra == BOTH and any(
            finding.end <= f.start < cue.start for f in findings if f.label
        ):
            return None
        return cue
    return None


def _reaches_back(between: str) -> bool:
    """Whether a cue after ``between`` covers the finding before it.

    Across a comma or "with" only a list ending in "and"/"or" does ("A, B or C cannot be
    excluded"), not a new phrase ("effusion with atelectasis, consolidation not excluded").
    """
    parts = re.split(r",|\bwith\b", between)
    return len(parts) == 1 or re.search(r"\b(?:and|or)\b", parts[-1]) is not None


def _hypothetical(finding: Span, cues: list[Span], clause: str) -> bool:
    """Whether a hypothetical cue reaches the finding: any one before it that acts forwards, or
    one after it that acts backwards across no comma or "with" outside a list."""
    for cue in cues:
        if cue.label != HYPOTHETICAL:
            continue
        if cue.end <= finding.start and cue.extra != BACKWARD:
            return True
        if cue.start >= finding.end and cue.extra != FORWARD:
            return _reaches_back(clause[finding.end : cue.start])
    return False


def finding_status(finding: Span, findings: list[Span], cues: list[Span], clause: str) -> str:
    """Present, uncertain, absent or hypothetical from the cues around a finding in its clause.

    A hypothetical cue that reaches the finding decides before every other cue.
    """
    if finding.fixed:
        return finding.fixed
    if _hypothetical(finding, cues, clause):
        return HYPOTHETICAL
    inside = [c for c in cues if finding.start <= c.start and c.end <= finding.end]
    if inside:
        return inside[-1].label
    after = _backward_cue(finding, findings, cues)
    if after and _reaches_back(clause[finding.end : after.start]):
        return after.label
    before = [c for c in cues if c.end <= finding.start and c.extra != BACKWARD]
    return before[-1].label if before else PRESENT
