"""The extraction pipeline: report -> sections -> sentences -> clauses -> mentions -> sentences.

The rules are in the package docstring ("Merging" for ``_merge``).
"""

from __future__ import annotations

from dataclasses import dataclass

from radzero.data.sentences.cues import cue_spans, finding_status
from radzero.data.sentences.findings import finding_spans
from radzero.data.sentences.locations import clause_tokens, location_names, location_words
from radzero.data.sentences.sections import finding_text
from radzero.data.sentences.split import clauses, normalise, split_sentences
from radzero.data.sentences.vocabulary import (
    ABSENT,
    HYPOTHETICAL,
    PRESENT,
    UNCERTAIN,
    VOCABULARY,
)

_RANK = {ABSENT: 0, UNCERTAIN: 1, PRESENT: 2}
_TEMPLATES = {PRESENT: "There is {}", UNCERTAIN: "There may be {}", ABSENT: "There is no {}"}


@dataclass(frozen=True)
class _Mention:
    """One finding-sentence to be: where it was first said (sentence, clause, offset)."""

    finding: str
    status: str
    location: str
    order: tuple[int, int, int]


def extract_findings(report: str) -> list[str]:
    """Turn a free-text chest X-ray report into RadZero finding-sentences.

    Each sentence is "There is / may be / is no {finding}[ of {location}]." with canonical,
    lower-case finding names; duplicates across sections are merged and the order is that of the
    first mention. See the package docstring for the rules.
    """
    if not isinstance(report, str):
        raise TypeError(f"report must be a str, got {type(report).__name__}")
    mentions = []
    for index, sentence in enumerate(split_sentences(finding_text(report))):
        mentions.extend(_sentence_mentions(sentence, index))
    return [_render(mention) for mention in _merge(mentions)]


def _sentence_mentions(sentence: str, index: int) -> list[_Mention]:
    mentions = []
    for number, clause in enumerate(clauses(normalise(sentence))):
        findings = finding_spans(clause)
        cues = cue_spans(clause, findings)
        tokens = clause_tokens(clause)
        for position, finding in enumerate(findings):
            if not finding.label:
                continue
            status = finding_status(finding, findings, cues, clause)
            if status == HYPOTHETICAL:
                continue
            locations = [""]
            if finding.label not in VOCABULARY.never_located and not finding.fixed:
                words = location_words(finding, position, findings, cues, tokens)
                locations = location_names(words, finding.label) or [""]
            for location in locations:
                order = (index, number, finding.start)
                mentions.append(_Mention(finding.label, status, location, order))
    return mentions


def _merge(mentions: list[_Mention]) -> list[_Mention]:
    """Merge duplicates and conflicting statuses (rules in the package docstring)."""
    first: dict[tuple[str, str, str], _Mention] = {}
    for mention in mentions:
        first.setdefault((mention.finding, mention.status, mention.location), mention)
    order = {key: (mention.order, rank) for rank, (key, mention) in enumerate(first.items())}
    kept = set(first)

    def drop(loser: tuple[str, str, str], winner: tuple[str, str, str]) -> None:
        kept.discard(loser)
        order[winner] = min(order[winner], order[loser])

    keys = list(first)
    for key in keys:
        finding, status, location = key
        rivals = [k for k in keys if k in kept and k != key and k[0] == finding]
        if not location:
            located = [k for k in rivals if k[2] and _RANK[k[1]] >= _RANK[status]]
            positive = [k for k in rivals if status == ABSENT and k[1] != ABSENT]
            if located or positive:
                drop(key, (located or positive)[0])
                continue
        stronger = [k for k in rivals if k[2] == location and _RANK[k[1]] > _RANK[status]]
        if stronger:
            drop(key, stronger[0])
    return [first[key] for key in sorted(kept, key=order.__getitem__)]


def _render(mention: _Mention) -> str:
    where = f" of {mention.location}" if mention.location else ""
    return _TEMPLATES[mention.status].format(mention.finding) + where + "."
