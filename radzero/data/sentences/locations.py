"""Where a finding is: location words around it, normalised to side + region.

The rules are under "Locations" in the package docstring; the location words are in
vocabulary.yaml.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from radzero.data.sentences.findings import Span
from radzero.data.sentences.vocabulary import VOCABULARY

_TOKEN = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?|[^\sa-z0-9]")
_CONJUNCTIONS = frozenset({"and", "or"})
_LOCATION_WORDS = (
    frozenset(VOCABULARY.sides)
    | frozenset(VOCABULARY.both_sides)
    | frozenset(VOCABULARY.levels)
    | frozenset(VOCABULARY.regions)
    | VOCABULARY.plural_markers
    | VOCABULARY.other_location_words
)


@dataclass
class _Place:
    """Location words of one coordinated part ("right upper", "and lower lobes")."""

    side: str | None = None
    vertical: str | None = None
    regions: tuple[str, ...] = ()
    plural: bool = False


def clause_tokens(clause: str) -> list[tuple[str, int, int]]:
    """The words and punctuation marks of a clause with their offsets."""
    return [(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(clause)]


def location_words(
    finding: Span,
    position: int,
    findings: list[Span],
    cues: list[Span],
    tokens: list[tuple[str, int, int]],
) -> list[str]:
    """Location words before the finding, inside its phrase and in a phrase right after it."""
    limit = max(
        [s.end for s in findings[:position]] + [c.end for c in cues if c.end <= finding.start] + [0]
    )
    following = [s.start for s in findings[position + 1 :] if s.start >= finding.end]
    stop = min(
        following
        + [c.start for c in cues if c.start >= finding.end]
        + [tokens[-1][2] if tokens else 0]
    )
    before = [t[0] for t in tokens if limit <= t[1] and t[2] <= finding.start]
    after = [t[0] for t in tokens if finding.end <= t[1] and t[2] <= stop]
    inner = [m.group() for m in _TOKEN.finditer(finding.extra)]
    phrase = _prepositional_phrase(after)
    conjunctions = [i for i, word in enumerate(phrase) if word in _CONJUNCTIONS]
    if conjunctions and after[len(after) - len(phrase) :] == phrase and stop in following:
        phrase = phrase[: conjunctions[-1]]  # "... and left lower lobe atelectasis"
    return _premodifiers(before) + inner + phrase


def _premodifiers(words: list[str]) -> list[str]:
    """The run of location and descriptive words directly before a finding.

    A run coordinated with "and"/"or" that follows a preposition ("opacity in the right lower
    lobe and left lower lobe atelectasis") keeps only its last part: the rest belongs to the
    phrase before.
    """
    run: list[str] = []
    position = len(words) - 1
    while position >= 0:
        word = words[position]
        if word in _CONJUNCTIONS:
            if not position or words[position - 1] not in _LOCATION_WORDS:
                break
        elif not (
            word in _LOCATION_WORDS
            or word in VOCABULARY.modifiers
            or word == "-"
            or word[0].isdigit()
        ):
            break
        run.insert(0, word)
        position -= 1
    stop = words[position] if position >= 0 else ""
    if stop in ("the", "a", "an") and position > 0:
        stop = words[position - 1]
    conjunctions = [i for i, word in enumerate(run) if word in _CONJUNCTIONS]
    if stop in VOCABULARY.prepositions and conjunctions:
        return run[conjunctions[-1] + 1 :]
    return run


def _prepositional_phrase(words: list[str]) -> list[str]:
    """Location words of "(is seen) in the right upper lobe and lingula" after a finding."""
    position = 0
    while position < min(len(words), 8) and (
        words[position] in VOCABULARY.leading_verbs or words[position][0].isdigit()
    ):
        position += 1
    if position >= len(words):
        return []
    if words[position] == "bilaterally":
        return ["bilaterally"]
    if words[position] not in VOCABULARY.prepositions:
        return []
    phrase = []
    for word in words[position + 1 :]:
        if not (word in _LOCATION_WORDS or word in VOCABULARY.phrase_fillers or word == "-"):
            break
        phrase.append(word)
    return phrase


def _places(words: list[str]) -> list[_Place]:
    """Split location words at "and"/"or" and read side, level and regions of each part."""
    places, current = [], _Place()
    for position, word in enumerate(words):
        if word in _CONJUNCTIONS:
            places.append(current)
            current = _Place()
        elif word in VOCABULARY.sides:
            current.side = VOCABULARY.sides[word]
        elif word in VOCABULARY.both_sides:
            current.side = "bilateral"
            current.regions += (VOCABULARY.both_sides[word],)
        elif word in VOCABULARY.levels:
            current.vertical = VOCABULARY.levels[word]
        elif word in VOCABULARY.regions:
            region, plural = VOCABULARY.regions[word]
            following = words[position + 1] if position + 1 < len(words) else ""
            if region == "costophrenic" and following in VOCABULARY.plural_markers:
                plural = True
            current.regions += (region,)
            current.plural = current.plural or plural
    places.append(current)
    return [p for p in places if p.side or p.vertical or p.regions]


def _share_words(places: list[_Place]) -> None:
    """Let coordinated parts borrow the region after them and the side before them.

    "right upper and lower lobes" -> "right upper lobe", "right lower lobe".
    """
    for position in range(len(places) - 2, -1, -1):
        place, following = places[position], places[position + 1]
        if not place.regions and following.regions:
            place.regions, place.plural = following.regions, following.plural
            place.vertical = place.vertical or following.vertical
    for previous, place in itertools.pairwise(places):
        place.side = place.side or previous.side


def _location_name(place: _Place, finding: str) -> str:
    """Normalised noun phrase of one place, e.g. "right upper lobe", "bilateral lung bases"."""
    region = next((r for r in VOCABULARY.region_priority if r in place.regions), None)
    if region in ("lung", None) and place.vertical:
        region = "zone"
    if region in ("lobe", "zone") and not place.vertical:
        region = None
    if region == "lingula":
        return "lingula"
    side = place.side or ("bilateral" if place.plural else None)
    if region is None:
        if side is None:
            return ""
        # A side alone: the finding's own region ("left pleural effusion" -> left hemithorax).
        region = VOCABULARY.side_regions.get(finding, "lung")
    if region in ("lobe", "zone"):
        level = "middle" if region == "lobe" and place.vertical == "mid" else place.vertical
        names = (f"{level} {region}", f"{level} {region}s")
    else:
        names = VOCABULARY.region_names[region]
    if side == "bilateral":
        return f"bilateral {names[1]}"
    return f"{side} {names[0]}" if side else names[0]


def location_names(words: list[str], finding: str) -> list[str]:
    """The normalised locations named by a finding's location words, without repeats."""
    places = _places(words)
    _share_words(places)
    names = (_location_name(place, finding) for place in places)
    return list(dict.fromkeys(name for name in names if name))
