"""Synthetic chest radiographs: determinism, ground-truth consistency, visibility, CLI."""

from __future__ import annotations

import csv
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from radzero import cli
from radzero.data import phantom
from radzero.data.phantom import (
    FINDINGS,
    anatomy,
    dataset,
    generate_case,
    lesions,
    rendering,
    write_dataset,
)

SENTENCE = re.compile(r"^There (is|may be) (no )?(.+?)(?: of (.+))?\.$")
LESIONS = ("pleural effusion", "pneumothorax", "consolidation", "nodule", "mass")


def _case(seed: int, size: int = 224, prevalence: float = 0.5, bit_depth: int = 8):
    return generate_case(np.random.default_rng([seed, 0]), size, prevalence, bit_depth)


@pytest.fixture(scope="module")
def batch() -> list[phantom.PhantomCase]:
    return [_case(seed) for seed in range(40)]


def _with_only(name: str, seed: int, size: int = 224) -> rendering.Case:
    """A case holding exactly one finding, built from the generator's internals."""
    rng = np.random.default_rng([seed, 1])
    chest = anatomy.sample_anatomy(rng, size)
    findings = lesions.sample_lesions(rng, chest, {name})
    return rendering.Case(chest, tuple(findings), seed, (0.13, 0.88, 1.0, 0.015))


def test_same_seed_same_case_and_different_seeds_differ() -> None:
    first, again, other = _case(3), _case(3), _case(4)
    assert first.image.tobytes() == again.image.tobytes()
    assert (first.report, first.sentences, first.boxes) == (
        again.report,
        again.sentences,
        again.boxes,
    )
    assert first.masks.keys() == again.masks.keys()
    assert all(np.array_equal(first.masks[k], again.masks[k]) for k in first.masks)
    assert first.image.tobytes() != other.image.tobytes()


@pytest.mark.parametrize("size", [64, 224])
def test_shapes_and_bit_depths(size: int) -> None:
    eight, sixteen = _case(5, size), _case(5, size, bit_depth=16)
    assert eight.image.shape == sixteen.image.shape == (size, size)
    assert eight.image.dtype == np.uint8 and sixteen.image.dtype == np.uint16
    assert sixteen.image.max() > 60000 and sixteen.image.min() < 2000
    assert np.abs(sixteen.image / 257.0 - eight.image).max() <= 1.0
    for mask in eight.masks.values():
        assert mask.dtype == bool and mask.shape == (size, size)


def test_labels_agree_with_boxes_masks_and_sentences(batch) -> None:
    for case in batch:
        assert set(case.labels) == set(FINDINGS)
        parsed = [SENTENCE.match(s) for s in case.sentences]
        assert all(parsed), case.sentences
        by_name = {m.group(3): m for m in parsed}
        assert len(by_name) == len(parsed), "one sentence per finding"
        boxes = {box["finding"]: box for box in case.boxes}
        for name in FINDINGS:
            present = case.labels[name] == 1
            assert (name in boxes) == (name in case.masks) == present
            match = by_name.get(name)
            if present:
                assert match and not match.group(2), (name, case.sentences)
                assert match.group(4) in (None, boxes[name]["location"])
            elif match:
                assert match.group(2) == "no " and match.group(4) is None
    positives = [SENTENCE.match(s) for case in batch for s in case.sentences]
    positives = [m for m in positives if not m.group(2) and m.group(3) in LESIONS]
    assert {m.group(4) is None for m in positives} == {True, False}, "sites stated and unstated"


def test_boxes_are_mask_bounds_inside_the_image(batch) -> None:
    for case in batch:
        size = case.image.shape[0]
        for box in case.boxes:
            ys, xs = np.nonzero(case.masks[box["finding"]])
            assert (box["x1"], box["y1"], box["x2"], box["y2"]) == (
                xs.min(),
                ys.min(),
                xs.max(),
                ys.max(),
            )
            assert 0 <= box["x1"] <= box["x2"] < size and 0 <= box["y1"] <= box["y2"] < size
            assert isinstance(box["x1"], int) and isinstance(box["location"], str)


@pytest.mark.parametrize("name", LESIONS)
def test_lesions_lie_in_the_lung_fields(name: str) -> None:
    inside, over_heart = [], []
    for seed in range(6):
        case = _with_only(name, seed)
        mask = case.lesions[0].mask
        inside.append((case.anatomy.lungs[mask] > 0.5).mean())
        over_heart.append((case.anatomy.heart[mask] > 0.5).mean())
    assert np.mean(inside) > 0.9 and min(inside) > 0.6
    assert np.mean(over_heart) < 0.1


@pytest.mark.parametrize("name", [*LESIONS, "cardiomegaly"])
def test_findings_are_visible(name: str) -> None:
    """Intensity inside the mask changes against the same case rendered without the finding."""
    for seed in range(3):
        case = _with_only(name, seed)
        mask = case.lesions[0].mask
        with_it = rendering.render(case, 8)[mask].mean()
        without = rendering.render(replace(case, lesions=()), 8)[mask].mean()
        if name == "pneumothorax":  # the air rim is darker: no lung markings, less tissue
            assert with_it < without - 2, (seed, with_it, without)
        else:
            assert with_it > without + 10, (seed, with_it, without)


def test_round_lesions_stand_out_from_their_surroundings() -> None:
    for name in ("nodule", "mass"):
        for seed in range(3):
            case = _with_only(name, seed)
            mask = case.lesions[0].mask
            grown = lesions.dilate(mask, max(3, int(np.sqrt(mask.sum()) / 2)))
            ring = grown & ~mask & (case.anatomy.lungs > 0.5)
            image = rendering.render(case, 8)
            assert image[mask].mean() > image[ring].mean() + 10


def test_lesion_sizes_match_the_spec() -> None:
    for name, (low, high) in (("nodule", (0.032, 0.042)), ("mass", (0.07, 0.11 * 1.25))):
        for seed in range(4):
            mask = _with_only(name, seed).lesions[0].mask
            radius = np.sqrt(mask.sum() / np.pi) / mask.shape[0]
            assert low * 0.9 < radius < high, (name, radius)


def test_cardiothoracic_ratio() -> None:
    for seed in range(4):
        case = _with_only("cardiomegaly", seed)
        lungs = np.flatnonzero((case.anatomy.lungs > 0.5).any(axis=0))
        thorax = lungs[-1] - lungs[0] + 1
        for heart, low, high in (
            (case.anatomy.heart, 0.38, 0.52),
            (case.lesions[0].mask, 0.55, 0.72),
        ):
            columns = np.flatnonzero((heart > 0.5).any(axis=0))
            ratio = (columns[-1] - columns[0] + 1) / thorax
            assert low < ratio < high, (seed, ratio)


def test_reports_have_sections_negations_hedges_and_comparisons(batch) -> None:
    reports = [case.report for case in batch]
    assert all("FINDINGS:" in r and "IMPRESSION:" in r for r in reports)
    assert all(r.index("FINDINGS:") < r.index("IMPRESSION:") for r in reports)
    text = " ".join(reports)
    for phrase in ("No ", "Heart size is normal", "Possible", "unchanged from prior", "New "):
        assert phrase in text or phrase.lower() in text, phrase
    sentences = [s for case in batch for s in case.sentences]
    assert any(s.startswith("There may be ") for s in sentences)
    assert any(s.startswith("There is no ") for s in sentences)
    assert not any(re.search(r"prior|new|unchanged", s) for s in sentences)
    hedges = ("Possible", "may ", "cannot be excluded")
    hedged = [c for c in batch if any(s.startswith("There may be") for s in c.sentences)]
    assert all(any(h in c.report for h in hedges) for c in hedged)


def test_prevalence_per_finding() -> None:
    cases = [generate_case(np.random.default_rng([11, i]), size=64) for i in range(300)]
    for name in FINDINGS:
        rate = np.mean([c.labels[name] for c in cases])
        assert 0.22 < rate < 0.38, (name, rate)
    assert not any(generate_case(np.random.default_rng(i), 64, 0.0).boxes for i in range(3))
    assert all(len(generate_case(np.random.default_rng(i), 64, 1.0).boxes) == 6 for i in range(3))


def test_cli_writes_manifest(tmp_path: Path, capsys) -> None:
    out = tmp_path / "set"
    assert (
        cli.main(["phantom", "--out", str(out), "--count", "10", "--size", "64", "--seed", "3"])
        == 0
    )
    summary = capsys.readouterr().out.strip()
    assert "\n" not in summary and "10" in summary and "pleural effusion" in summary
    with (out / "manifest.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    expected = ["image", "report", "sentences", "split", "patient_id", *FINDINGS, "boxes", "masks"]
    assert reader.fieldnames == expected
    assert [sum(r["split"] == s for r in rows) for s in ("train", "val", "test")] == [7, 1, 2]
    assert len({r["patient_id"] for r in rows}) == 10 and rows[0]["patient_id"] == "P000000"
    for index, row in enumerate(rows):
        image = np.asarray(Image.open(out / row["image"]))
        case = generate_case(np.random.default_rng([3, index]), size=64)
        assert np.array_equal(image, case.image) and row["report"] == case.report
        assert json.loads(row["sentences"]) == case.sentences
        assert json.loads(row["boxes"]) == case.boxes
        masks = json.loads(row["masks"])
        assert sorted(masks) == sorted(case.masks)
        for name, path in masks.items():
            pixels = np.asarray(Image.open(out / path))
            assert set(np.unique(pixels)) <= {0, 255}
            assert np.array_equal(pixels > 0, case.masks[name])
        assert all(int(row[name]) == case.labels[name] for name in FINDINGS)


def test_write_dataset_16_bit_and_splits(tmp_path: Path) -> None:
    manifest = write_dataset(tmp_path, 3, size=64, seed=1, bit_depth=16, splits=(0.34, 0.33, 0.33))
    with manifest.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["split"] for r in rows) == ["test", "train", "val"]
    image = np.asarray(Image.open(tmp_path / rows[0]["image"]))
    assert image.dtype == np.uint16 and image.max() > 255
    first = dataset._split_names(50, 7, (0.7, 0.1, 0.2))
    assert first == dataset._split_names(50, 7, (0.7, 0.1, 0.2))
    assert first != dataset._split_names(50, 8, (0.7, 0.1, 0.2))
    assert [first.count(s) for s in ("train", "val", "test")] == [35, 5, 10]
    with pytest.raises(ValueError, match="splits"):
        write_dataset(tmp_path, 3, splits=(0.5, 0.5, 0.5))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--count", "0"], "count must be >= 1, got 0"),
        (["--count", "2", "--size", "32"], "size must be >= 64, got 32"),
        (["--count", "2", "--prevalence", "1.5"], "prevalence must be within [0, 1], got 1.5"),
        (["--count", "2", "--bit-depth", "12"], "bit_depth must be 8 or 16, got 12"),
        (["--count", "2", "--set", "sized=64"], "sized: did you mean 'size'"),
    ],
)
def test_bad_cli_arguments(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["phantom", "--out", str(tmp_path), *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "manifest.csv").exists()


def test_generate_case_rejects_bad_arguments() -> None:
    rng = np.random.default_rng(0)
    for kwargs in ({"size": 32}, {"prevalence": -0.1}, {"bit_depth": 12}):
        with pytest.raises(ValueError):
            generate_case(rng, **kwargs)
