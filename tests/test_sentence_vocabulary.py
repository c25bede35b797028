"""The finding-sentence vocabulary file: the shipped one loads, edits count, errors are clear."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from radzero.data.sentences import (
    DEVICE_VOCABULARY,
    FINDINGS_VOCABULARY,
    VocabularyError,
    canonical_finding,
    extract_findings,
    load_vocabulary,
)
from radzero.data.sentences.vocabulary import VOCABULARY, VOCABULARY_FILE

SHIPPED = yaml.safe_load(VOCABULARY_FILE.read_text(encoding="utf-8"))


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "vocabulary.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_shipped_vocabulary_counts() -> None:
    findings = [name for name in FINDINGS_VOCABULARY if name not in DEVICE_VOCABULARY]
    assert (len(findings), len(DEVICE_VOCABULARY), len(FINDINGS_VOCABULARY)) == (40, 14, 54)
    assert len(VOCABULARY.phrases) == 65
    assert tuple(SHIPPED["findings"]) == FINDINGS_VOCABULARY
    assert set(DEVICE_VOCABULARY) <= VOCABULARY.never_located


def test_loading_the_shipped_file_again_gives_the_same_tables() -> None:
    assert load_vocabulary() == VOCABULARY
    assert load_vocabulary(str(VOCABULARY_FILE)) == VOCABULARY


def test_an_edited_copy_takes_effect(tmp_path: Path) -> None:
    data = copy.deepcopy(SHIPPED)
    data["findings"]["cardiomegaly"]["phrases"].append("cardiothoracic ratio (?:is )?increased")
    data["findings"]["pneumothorax"]["side_region"] = "apex"
    data["class_aliases"]["Air Leak"] = "pneumothorax"
    edited = load_vocabulary(write(tmp_path, data))
    matched = [name for name, p in edited.phrases if p.search("cardiothoracic ratio is increased")]
    assert matched == ["cardiomegaly"]
    assert edited.side_regions["pneumothorax"] == "apex"
    assert edited.class_aliases["air leak"] == "pneumothorax"
    # the shipped tables are untouched
    assert extract_findings("Cardiothoracic ratio is increased.") == []
    assert canonical_finding("air leak") is None


def _set(keys: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        node = data
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value

    return edit


def _delete(keys: tuple[Any, ...]) -> Callable[[dict[str, Any]], None]:
    def edit(data: dict[str, Any]) -> None:
        node = data
        for key in keys[:-1]:
            node = node[key]
        del node[keys[-1]]

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_delete(("cues",)), "the file: missing cues"),
        (_set(("colours",), {}), "the file: unknown colours"),
        (_set(("findings", "mass", "devise"), True), "findings > mass: unknown devise"),
        (_set(("findings", "stent", "device"), "yes"), "findings > stent > device: expected true"),
        (_set(("findings", "Mass"), {"phrases": ["mass"]}), "findings > Mass: a name is lower"),
        (_set(("findings", "mass", "phrases"), []), "findings > mass > phrases: expected a non"),
        (
            _set(("findings", "mass", "phrases", 1), "mass[- ]?like (?:{opacity}"),
            "findings > mass > phrases[1]: not a valid pattern (missing ), unterminated",
        ),
        (
            _set(("findings", "mass", "phrases", 1), "mass-like {opacty}"),
            "findings > mass > phrases[1]: unknown fragment {opacty} (known: opacity, cp_angle",
        ),
        (_set(("fragments", "heart"), "{opacity}"), "fragments > heart: unknown fragment"),
        (
            _set(("findings", "pneumothorax", "side_region"), "thorax"),
            "findings > pneumothorax > side_region: 'thorax' is not one of base, apex",
        ),
        (
            _set(("class_aliases", "pleural other"), "pleural thickness"),
            "class_aliases > pleural other: 'pleural thickness' is not a finding named under",
        ),
        (
            _set(("normal_statements", 0, "absent"), ["cardiomegally"]),
            "normal_statements[0] > absent: 'cardiomegally' is not a finding named under findings",
        ),
        (
            _set(("cues", 0, "status"), "negated"),
            "cues[0] > status: 'negated' is not one of absent, uncertain",
        ),
        (
            _set(("cues", 0, "scope"), "sideways"),
            "cues[0] > scope: 'sideways' is not one of forward, backward, both",
        ),
        (_set(("cues", 0, "phrases"), ["no"]), "cues[0] > phrases: expected text, got list"),
        (
            _set(("locations", "regions", "lobe"), "lobus"),
            "locations > regions > lobe: 'lobus' is not one of lobe, lingula",
        ),
        (
            _delete(("locations", "region_names", "apex")),
            "locations > region_names: no names for apex",
        ),
        (
            _set(("locations", "region_names", "apex"), ["apex"]),
            "locations > region_names > apex: expected [name of one, name of both]",
        ),
        (_set(("sections", "kept"), 3), "sections > kept: expected a non-empty list, got int 3"),
    ],
)
def test_malformed_vocabulary_names_the_entry(
    tmp_path: Path, edit: Callable[[dict[str, Any]], None], message: str
) -> None:
    data = copy.deepcopy(SHIPPED)
    edit(data)
    path = write(tmp_path, data)
    with pytest.raises(VocabularyError) as caught:
        load_vocabulary(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_a_finding_given_twice_is_refused(tmp_path: Path) -> None:
    text = VOCABULARY_FILE.read_text(encoding="utf-8")
    entry = "  stent:\n    source: project\n    device: true\n"
    entry += "    phrases:\n      - |\n        stents?\n"
    assert entry in text
    path = tmp_path / "vocabulary.yaml"
    path.write_text(text.replace(entry, entry + entry), encoding="utf-8")
    with pytest.raises(VocabularyError, match=r"found 'stent' twice"):
        load_vocabulary(path)


def test_broken_yaml_and_missing_file_are_vocabulary_errors(tmp_path: Path) -> None:
    path = tmp_path / "vocabulary.yaml"
    path.write_text("findings: [unclosed\n", encoding="utf-8")
    with pytest.raises(VocabularyError, match=r"line 2"):
        load_vocabulary(path)
    with pytest.raises(VocabularyError, match=r"No such file"):
        load_vocabulary(tmp_path / "absent.yaml")
    path.write_text("- a list\n", encoding="utf-8")
    with pytest.raises(VocabularyError, match=r"the file: expected a mapping, got list"):
        load_vocabulary(path)
