"""The part of a report findings are read from: FINDINGS and IMPRESSION, or all but other sections.

The rules are under "Sections" in the package docstring; the section names are in
vocabulary.yaml.
"""

from __future__ import annotations

import re

from radzero.data.sentences.vocabulary import VOCABULARY

# A label opening a line or sentence, a bare FINDINGS line, or an upper-case FINDINGS: anywhere.
_HEADER = re.compile(
    r"(?im)(?:^|(?<=[.!?] ))[ \t]*(?P<name>[a-z][a-z /&]{0,40}?)[ \t]*:"
    r"|^[ \t]*(?P<bare>findings|impressions?|conclusions?)[ \t]*$"
    r"|(?-i:\b(?P<upper>FINDINGS|IMPRESSIONS?|CONCLUSIONS?)[ \t]*:)"
)


def _section_kind(match: re.Match[str]) -> str | None:
    """Whether a header opens a kept section ("keep"), another known one ("other") or neither."""
    name = match.group("bare") or match.group("upper") or match.group("name")
    name = re.sub(r"\s+", " ", name.lower().replace("&", " and ").replace("/", " and ")).strip()
    if name in VOCABULARY.kept_sections:
        return "keep"
    return "other" if name in VOCABULARY.other_sections else None


def finding_text(report: str) -> str:
    """The FINDINGS and IMPRESSION bodies, or the text outside other known sections."""
    headers = [
        (match, kind) for match in _HEADER.finditer(report) if (kind := _section_kind(match))
    ]
    if not headers:
        return report
    kept, rest = [], [report[: headers[0][0].start()]]
    for position, (match, kind) in enumerate(headers):
        end = headers[position + 1][0].start() if position + 1 < len(headers) else len(report)
        body = report[match.end() : end]
        if kind == "keep":
            kept.append(body)
        else:
            paragraphs = re.split(r"\n[ \t]*\n", body, maxsplit=1)
            rest.append(paragraphs[1] if len(paragraphs) > 1 else "")
    return "\n\n".join(kept if kept else rest)
