"""The extractor's vocabulary: ``vocabulary.yaml`` read once at import and checked.

``VOCABULARY`` holds every table in the form the rules use (patterns compiled, word lists as
sets); the file's comments say what each table means. ``load_vocabulary`` reads a file the same
way, so an edited copy can be checked before it replaces the shipped one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# HYPOTHETICAL: a condition, request or limit of the study ("if there is concern for fracture")
PRESENT, UNCERTAIN, ABSENT, HYPOTHETICAL = "present", "uncertain", "absent", "hypothetical"
FORWARD, BACKWARD, BOTH = "forward", "backward", "both"

VOCABULARY_FILE = Path(__file__).with_name("vocabulary.yaml")

_FRAGMENT_NAME = re.compile(r"[a-z_]+")
_FRAGMENT = re.compile(r"\{([a-z_]+)\}")
_FINDING_NAME = re.compile(r"[a-z][a-z -]*[a-z]")
# Regions named from their level or on their own ("right upper lobe", "left mid zone", "lingula"),
# so without an entry in region_names.
_LEVEL_REGIONS = frozenset({"lobe", "zone", "lingula"})
_A_FINDING = "a finding named under findings"


class VocabularyError(ValueError):
    """A vocabulary file that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True)
class Vocabulary:
    """Every table of the rules, ready to match; vocabulary.yaml describes each one."""

    # findings, in file order; each phrase pattern is (canonical name, pattern)
    phrases: tuple[tuple[str, re.Pattern[str]], ...]
    findings: tuple[str, ...]
    devices: tuple[str, ...]
    never_located: frozenset[str]
    side_regions: dict[str, str]  # finding -> region when only a side is named; others "lung"
    class_aliases: dict[str, str]
    not_findings: re.Pattern[str]
    normal_statements: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...]  # (pattern, absent)
    # cues, in precedence order: (pattern, status, scope)
    cues: tuple[tuple[re.Pattern[str], str, str], ...]
    comparison_wording: re.Pattern[str]
    # sections and sentence splitting
    kept_sections: frozenset[str]
    other_sections: frozenset[str]
    abbreviations: tuple[str, ...]
    wrap_words: frozenset[str]
    clause_openers: tuple[str, ...]
    # locations
    sides: dict[str, str]
    both_sides: dict[str, str]
    levels: dict[str, str]
    regions: dict[str, tuple[str, bool]]  # word -> (region, named in the plural)
    plural_markers: frozenset[str]
    other_location_words: frozenset[str]
    region_priority: tuple[str, ...]
    region_names: dict[str, tuple[str, str]]  # region -> (one, both)
    modifiers: frozenset[str]
    prepositions: frozenset[str]
    leading_verbs: frozenset[str]
    phrase_fillers: frozenset[str]


class _UniqueKeyLoader(yaml.SafeLoader):
    """A safe YAML loader that refuses a key given twice in one mapping (a copied entry)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        mapping = super().construct_mapping(node, deep=deep)
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"found {key!r} twice",
                    key_node.start_mark,
                )
            seen.add(key)
        return mapping


def load_vocabulary(path: str | Path = VOCABULARY_FILE) -> Vocabulary:
    """Read and check a vocabulary file (by default the shipped one).

    Raises VocabularyError naming the file and the entry when the file is no valid YAML, misses
    or adds a key, holds a value of the wrong kind, a pattern that does not compile, or a name
    (finding, region, fragment, status, scope) that is not defined.
    """
    try:
        with open(path, encoding="utf-8") as stream:
            data = yaml.load(stream, Loader=_UniqueKeyLoader)
    except (OSError, yaml.YAMLError) as err:
        raise VocabularyError(f"{path}: {err}") from err
    try:
        return _vocabulary(data)
    except VocabularyError as err:
        raise VocabularyError(f"{path}: {err}") from None


def _vocabulary(data: Any) -> Vocabulary:
    top = _mapping(
        data,
        "the file",
        required=(
            "fragments",
            "findings",
            "class_aliases",
            "not_findings",
            "normal_statements",
            "cues",
            "comparison_wording",
            "sections",
            "splitting",
            "locations",
        ),
    )
    fragments = {}
    for name, rx in _mapping(top["fragments"], "fragments").items():
        where = f"fragments > {name}"
        if not isinstance(name, str) or not _FRAGMENT_NAME.fullmatch(name):
            raise VocabularyError(f"{where}: a name is lower-case letters and _")
        fragments[name] = _expand(_text(rx, where), {}, where)
    locations = _locations(top["locations"])
    findings = _findings(top["findings"], fragments, locations["region_names"])
    names = findings["findings"]
    class_aliases = {}
    for alias, finding in _mapping(top["class_aliases"], "class_aliases").items():
        where = f"class_aliases > {alias}"
        key = " ".join(_text(alias, "class_aliases").lower().split())
        class_aliases[key] = _one_of(finding, names, where, _A_FINDING)
    normal_statements = []
    for number, entry in enumerate(_list(top["normal_statements"], "normal_statements")):
        where = f"normal_statements[{number}]"
        entry = _mapping(entry, where, ("absent", "phrases", "source"))
        _text(entry["source"], f"{where} > source")
        absent = tuple(
            _one_of(finding, names, f"{where} > absent", _A_FINDING)
            for finding in _list(entry["absent"], f"{where} > absent")
        )
        pattern = _pattern(entry["phrases"], f"{where} > phrases", fragments, "{}")
        normal_statements.append((pattern, absent))
    cues = []
    for number, entry in enumerate(_list(top["cues"], "cues")):
        where = f"cues[{number}]"
        entry = _mapping(entry, where, ("status", "scope", "phrases", "source"))
        _text(entry["source"], f"{where} > source")
        status = _one_of(entry["status"], (ABSENT, UNCERTAIN, HYPOTHETICAL), f"{where} > status")
        scope = _one_of(entry["scope"], (FORWARD, BACKWARD, BOTH), f"{where} > scope")
        # A cue is a whole word or phrase: no letter, digit or hyphen on either side.
        pattern = _pattern(
            entry["phrases"], f"{where} > phrases", fragments, r"(?<![\w-])(?:{})(?![\w-])"
        )
        cues.append((pattern, status, scope))
    sections = _mapping(top["sections"], "sections", ("kept", "other"))
    splitting = _mapping(
        top["splitting"], "splitting", ("abbreviations", "wrap_words", "clause_openers")
    )
    return Vocabulary(
        **findings,
        class_aliases=class_aliases,
        not_findings=_pattern(top["not_findings"], "not_findings", fragments, r"\b(?:{})\b"),
        normal_statements=tuple(normal_statements),
        cues=tuple(cues),
        comparison_wording=_pattern(
            top["comparison_wording"], "comparison_wording", fragments, r"\b(?:{})\b"
        ),
        kept_sections=frozenset(_words(sections["kept"], "sections > kept")),
        other_sections=frozenset(_words(sections["other"], "sections > other")),
        abbreviations=_words(splitting["abbreviations"], "splitting > abbreviations"),
        wrap_words=frozenset(_words(splitting["wrap_words"], "splitting > wrap_words")),
        clause_openers=_words(splitting["clause_openers"], "splitting > clause_openers"),
        **locations,
    )


def _findings(
    value: Any, fragments: dict[str, str], region_names: dict[str, tuple[str, str]]
) -> dict[str, Any]:
    """The finding tables, keyed by their Vocabulary field names."""
    phrases, devices, never_located, side_regions = [], [], set(), {}
    for name, entry in _mapping(value, "findings").items():
        where = f"findings > {name}"
        if not isinstance(name, str) or not _FINDING_NAME.fullmatch(name):
            raise VocabularyError(f"{where}: a name is lower-case words (letters, spaces, -)")
        entry = _mapping(entry, where, ("phrases", "source"), ("device", "located", "side_region"))
        _text(entry["source"], f"{where} > source")
        for number, rx in enumerate(_list(entry["phrases"], f"{where} > phrases")):
            pattern = _pattern(rx, f"{where} > phrases[{number}]", fragments, r"\b(?:{})\b")
            phrases.append((name, pattern))
        if _flag(entry, "device", False, where):
            devices.append(name)
            never_located.add(name)
        if not _flag(entry, "located", True, where):
            never_located.add(name)
        if "side_region" in entry:
            where = f"{where} > side_region"
            side_regions[name] = _one_of(entry["side_region"], region_names, where)
    if not phrases:
        raise VocabularyError("findings: no finding")
    return {
        "phrases": tuple(phrases),
        "findings": tuple(dict.fromkeys(name for name, _ in phrases)),
        "devices": tuple(devices),
        "never_located": frozenset(never_located),
        "side_regions": side_regions,
    }


def _locations(value: Any) -> dict[str, Any]:
    """The location tables, keyed by their Vocabulary field names."""
    word_maps = ("sides", "both_sides", "levels", "regions", "plural_regions")
    word_sets = (
        "plural_markers",
        "other_words",
        "modifiers",
        "prepositions",
        "leading_verbs",
        "phrase_fillers",
    )
    table = _mapping(
        value, "locations", (*word_maps, "region_priority", "region_names", *word_sets)
    )
    priority = _words(table["region_priority"], "locations > region_priority")
    region_names = {}
    for region, names in _mapping(table["region_names"], "locations > region_names").items():
        where = f"locations > region_names > {region}"
        _one_of(region, priority, where)
        names = _list(names, where)
        if len(names) != 2 or not all(isinstance(name, str) for name in names):
            raise VocabularyError(f"{where}: expected [name of one, name of both], got {names!r}")
        region_names[region] = (names[0], names[1])
    unnamed = [r for r in priority if r not in region_names and r not in _LEVEL_REGIONS]
    if unnamed:
        raise VocabularyError(f"locations > region_names: no names for {', '.join(unnamed)}")
    if "lung" not in region_names:
        raise VocabularyError("locations > region_names: the default region lung has no names")
    allowed_targets = {"sides": ("right", "left", "bilateral"), "levels": None}
    maps = {}
    for key in word_maps:
        where, allowed = f"locations > {key}", allowed_targets.get(key, priority)
        maps[key] = {
            _text(word, where): (
                _one_of(target, allowed, f"{where} > {word}")
                if allowed
                else _text(target, f"{where} > {word}")
            )
            for word, target in _mapping(table[key], where).items()
        }
    words = {key: frozenset(_words(table[key], f"locations > {key}")) for key in word_sets}
    regions = {word: (region, False) for word, region in maps["regions"].items()}
    regions.update((word, (region, True)) for word, region in maps["plural_regions"].items())
    return {
        "sides": maps["sides"],
        "both_sides": maps["both_sides"],
        "levels": maps["levels"],
        "regions": regions,
        "plural_markers": words["plural_markers"],
        "other_location_words": words["other_words"],
        "region_priority": priority,
        "region_names": region_names,
        "modifiers": words["modifiers"],
        "prepositions": words["prepositions"],
        "leading_verbs": words["leading_verbs"],
        "phrase_fillers": words["phrase_fillers"],
    }


# ---------------------------------------------------------------------------- checked values


def _kind(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _mapping(
    value: Any, where: str, required: tuple[str, ...] = (), optional: tuple[str, ...] = ()
) -> dict[Any, Any]:
    """``value`` as a mapping; with ``required`` given, exactly those keys and some ``optional``."""
    if not isinstance(value, dict):
        raise VocabularyError(f"{where}: expected a mapping, got {_kind(value)}")
    if required:
        missing = [key for key in required if key not in value]
        if missing:
            raise VocabularyError(f"{where}: missing {', '.join(missing)}")
        unknown = [str(key) for key in value if key not in required + optional]
        if unknown:
            allowed = ", ".join(required + optional)
            raise VocabularyError(f"{where}: unknown {', '.join(unknown)} (allowed: {allowed})")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise VocabularyError(f"{where}: expected a non-empty list, got {_kind(value)}")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise VocabularyError(f"{where}: expected text, got {_kind(value)}")
    return value


def _flag(entry: dict[str, Any], key: str, default: bool, where: str) -> bool:
    value = entry.get(key, default)
    if not isinstance(value, bool):
        raise VocabularyError(f"{where} > {key}: expected true or false, got {_kind(value)}")
    return value


def _one_of(value: Any, allowed: Any, where: str, what: str = "") -> str:
    """``value`` if it is one of ``allowed``; the error names ``what`` or else lists them."""
    if not isinstance(value, str) or value not in allowed:
        expected = what or f"one of {', '.join(allowed)}"
        raise VocabularyError(f"{where}: {value!r} is not {expected}")
    return value


def _words(value: Any, where: str) -> tuple[str, ...]:
    """A block of space-separated words, or a list of entries of one or more words."""
    if isinstance(value, str):
        return tuple(_text(value, where).split())
    return tuple(" ".join(_text(entry, where).split()) for entry in _list(value, where))


def _expand(rx: str, fragments: dict[str, str], where: str) -> str:
    """``rx`` with each {name} replaced by its fragment."""

    def fragment(match: re.Match[str]) -> str:
        if match.group(1) not in fragments:
            known = ", ".join(fragments) or "none here"
            raise VocabularyError(f"{where}: unknown fragment {match.group()} (known: {known})")
        return fragments[match.group(1)]

    return _FRAGMENT.sub(fragment, rx)


def _pattern(value: Any, where: str, fragments: dict[str, str], template: str) -> re.Pattern[str]:
    """Compile a phrase block: its lines are alternatives, set into ``template`` at {}."""
    lines = [line.strip() for line in _text(value, where).splitlines() if line.strip()]
    rx = template.format(_expand("|".join(lines), fragments, where))
    try:
        return re.compile(rx)
    except re.error as err:
        raise VocabularyError(f"{where}: not a valid pattern ({err}): {rx}") from None


VOCABULARY = load_vocabulary()
# Every canonical name, findings and devices, in vocabulary order.
FINDINGS_VOCABULARY: tuple[str, ...] = VOCABULARY.findings
# Canonical names of support devices (sentences about them never carry a location).
DEVICE_VOCABULARY: tuple[str, ...] = VOCABULARY.devices
