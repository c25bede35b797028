"""Report text into sentences and sentences into clauses, normalised for matching.

The rules are under "Sentences and clauses" in the package docstring; abbreviations, wrap words
and clause openers are in vocabulary.yaml.
"""

from __future__ import annotations

import re

from radzero.data.sentences.vocabulary import VOCABULARY

_LIST_MARKER = re.compile(r"^\s*(?:\d{1,2}[.)](?=\s|$)|[-*•](?=\s))\s*")
_BREAK = re.compile(r"(?<=[.!?;])\s+|\n+")


def _alternatives(words: tuple[str, ...]) -> str:
    """A pattern matching any of ``words`` as written."""
    return "|".join(re.escape(word) for word in words)


_ABBREVIATION = re.compile(rf"(?i)\b(?:{_alternatives(VOCABULARY.abbreviations)})\.$")
_CLAUSE_BREAK = re.compile(
    r"\s*;\s*"
    rf"|,?\s+(?=(?:{_alternatives(VOCABULARY.clause_openers)})\b)"
    r"|,?\s+(?=and (?:a|an|the|there)\b)"
    r"|,\s*(?=(?:with )?(?:a|an|the|this|these)\b)"
    r"|(?<!\bif)(?<!\bwhether),?\s+(?=there (?:is|are|has|have|was|were)\b)"
)


def _continues(previous: str, line: str) -> bool:
    """Whether ``line`` carries on the sentence of the line before it (a wrapped line)."""
    if not previous or previous[-1] in ".!?;:" or _LIST_MARKER.match(line):
        return False
    if previous[-1] in ",-/" or previous.split()[-1].lower() in VOCABULARY.wrap_words:
        return True
    first = line.split()[0]
    acronym = first.isupper() and len(first) > 1 and not line.isupper()
    return not first[0].isupper() or acronym


def _join_wrapped_lines(text: str) -> str:
    """One line per sentence run: wrapped lines joined, other line breaks kept."""
    pieces, previous = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if line:
            pieces.append(" " if _continues(previous, line) else "\n")
            pieces.append(line)
        else:
            pieces.append("\n")
        previous = line
    return "".join(pieces)


def split_sentences(text: str) -> list[str]:
    """Sentences with list markers removed; decimals and abbreviations do not split."""
    sentences: list[str] = []
    glue = False
    for piece in _BREAK.split(_join_wrapped_lines(text)):
        if glue and sentences:
            sentences[-1] = f"{sentences[-1]} {piece}"
        else:
            sentences.append(piece)
        glue = bool(_ABBREVIATION.search(piece))
    stripped = (_LIST_MARKER.sub("", sentence).strip() for sentence in sentences)
    return [sentence for sentence in stripped if re.search(r"[A-Za-z]", sentence)]


def normalise(sentence: str) -> str:
    """Lower-case text with shorthand expanded and comparison wording removed.

    Brackets become commas and colons ("Lungs: Clear.") spaces.
    """
    text = sentence.lower().replace("’", "'")
    text = re.sub(r"\bw/o\b", "without", text)
    text = re.sub(r"\bs/p\b", "status post", text)
    text = re.sub(r"\bh/o\b", "history of", text)
    text = re.sub(r"\bb/l\b", "bilateral", text)
    text = re.sub(r"\br/o\b", "rule out", text)
    text = re.sub(r"\bw/", "with ", text)
    text = re.sub(r"\s*/\s*", " or ", text)
    text = re.sub(r"[()\[\]{}]", ",", text).replace(":", " ")
    text = VOCABULARY.comparison_wording.sub(" ", text)
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"\s+,", ",", text)
    return re.sub(r"(?:,\s*){2,}", ", ", text).strip(" .,;:!?")


def clauses(sentence: str) -> list[str]:
    """The clauses of a normalised sentence, split where a new statement starts."""
    return [part.strip(" ,") for part in _CLAUSE_BREAK.split(sentence) if part.strip(" ,")]
