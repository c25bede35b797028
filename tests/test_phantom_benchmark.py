"""Phantom sets read as a benchmark: manifest fields against the generator, masks, S3."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from radzero import storage
from radzero.data import benchmarks
from radzero.data.phantom import FINDINGS, generate_case, write_dataset
from radzero.eval.scoring import TruthBuilder

COUNT, SIZE, SEED, PREVALENCE = 12, 64, 2, 0.5
COLUMNS = [
    "image",
    "split",
    *FINDINGS,
    "boxes",
    "masks",
    "patient_id",
    "sentences",
    "report",
]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_dataset(tmp_path / "phantoms", COUNT, size=SIZE, seed=SEED, prevalence=PREVALENCE)
    return tmp_path / "phantoms"


def _cases() -> list:
    return [generate_case(np.random.default_rng([SEED, i]), SIZE, PREVALENCE) for i in range(COUNT)]


def _written(folder: Path) -> list[dict]:
    with (folder / "manifest.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def _png(uri: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(storage.read_bytes(uri))))


def test_manifest_fields_match_the_generator(folder: Path) -> None:
    frame = benchmarks.read("phantom", folder)
    assert list(frame.columns) == COLUMNS and len(frame) == COUNT
    assert benchmarks.READERS["phantom"].pathologies == FINDINGS
    assert (frame[list(FINDINGS)].dtypes == np.float64).all()
    written = _written(folder)
    assert frame["split"].tolist() == [row["split"] for row in written]
    assert set(frame["split"]) == {"train", "val", "test"}
    cases = _cases()
    assert sum(len(case.boxes) for case in cases) > 10, "the set should hold findings"
    for (_, row), case, raw in zip(frame.iterrows(), cases, written, strict=True):
        assert row["image"] == str(folder / raw["image"])
        assert np.array_equal(_png(row["image"]), case.image)
        assert {name: row[name] for name in FINDINGS} == {
            name: float(value) for name, value in case.labels.items()
        }
        assert row["boxes"] == case.boxes
        assert [list(box) for box in row["boxes"]] == [
            ["finding", "x1", "y1", "x2", "y2", "location"] for _ in case.boxes
        ]
        assert set(row["masks"]) == set(case.masks) == {b["finding"] for b in case.boxes}
        for name, uri in row["masks"].items():
            assert Path(uri).is_absolute() and uri.startswith(str(folder / "masks"))
            assert np.array_equal(_png(uri) > 0, case.masks[name])
        assert row["sentences"] == case.sentences and row["report"] == case.report
        assert row["patient_id"] == raw["patient_id"]


def test_truth_builder_reads_the_boxes_and_masks(folder: Path) -> None:
    """The evaluation's ground truth from a manifest row, on the image's own grid and on half."""
    frame = benchmarks.read("phantom", folder)
    row, case = next(
        (row, case)
        for (_, row), case in zip(frame.iterrows(), _cases(), strict=True)
        if len(case.boxes) >= 2
    )
    same = TruthBuilder(size=SIZE, template="There is {}", segment=FINDINGS)
    truth = same.build(row.to_dict(), (SIZE, SIZE))
    assert truth.boxes == [
        (b["finding"], f"There is {b['finding']}", (b["x1"], b["y1"], b["x2"], b["y2"]))
        for b in case.boxes
    ]
    assert set(truth.masks) == set(case.masks)
    assert all(np.array_equal(truth.masks[k], case.masks[k]) for k in case.masks)
    half = TruthBuilder(size=SIZE // 2, template="{}", segment=FINDINGS).build(
        row.to_dict(), (SIZE, SIZE)
    )
    for finding, mask in half.masks.items():
        assert mask.shape == (SIZE // 2, SIZE // 2)
        assert np.array_equal(mask, case.masks[finding][::2, ::2])


def test_blank_labels_are_unknown(folder: Path) -> None:
    rows = _written(folder)
    rows[0]["nodule"] = ""
    with (folder / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    frame = benchmarks.read("phantom", folder)
    assert math.isnan(frame["nodule"].iloc[0]) and frame["nodule"].iloc[1:].notna().all()


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("split", "validation", "unknown split 'validation'"),
        ("mass", "2", "not 0/1"),
        ("mass", "yes", "mass holds 'yes'"),
        ("boxes", "[{", "is not JSON"),
        ("boxes", '{"finding": "mass"}', "is not a JSON list"),
        ("boxes", '[{"finding": "edema", "x1": 0, "y1": 0, "x2": 1, "y2": 1}]', "known finding"),
        ("boxes", '[{"finding": "mass", "x1": 5, "y1": 0, "x2": 1, "y2": 1}]', "x1 <= x2"),
        ("boxes", '[{"finding": "mass", "x1": 0.5, "y1": 0, "x2": 1, "y2": 1}]', "integer"),
        ("masks", '{"edema": "masks/x.png"}', "not finding -> file"),
        ("sentences", '"There is a mass."', "is not a JSON list"),
    ],
)
def test_malformed_manifests_name_the_file(
    folder: Path, column: str, value: str, message: str
) -> None:
    rows = _written(folder)
    rows[0][column] = value
    with (folder / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(ValueError, match=message) as err:
        benchmarks.read("phantom", folder)
    assert str(folder / "manifest.csv") in str(err.value)


def test_missing_column(folder: Path) -> None:
    table = pd.read_csv(folder / "manifest.csv").drop(columns="masks")
    table.to_csv(folder / "manifest.csv", index=False)
    with pytest.raises(ValueError, match=r"lacks columns \['masks'\]"):
        benchmarks.read("phantom", folder)


def test_reading_from_s3(s3_bucket: str, folder: Path) -> None:
    root = f"s3://{s3_bucket}/phantoms"
    for path in folder.rglob("*"):
        if path.is_file():
            storage.write_bytes(f"{root}/{path.relative_to(folder).as_posix()}", path.read_bytes())
    local = benchmarks.read("phantom", folder)
    remote = benchmarks.read("phantom", root)

    def relative(uri: str, base: str) -> str:
        assert uri.startswith(f"{base}/")
        return uri[len(base) + 1 :].replace("\\", "/")

    assert [relative(u, root) for u in remote["image"]] == [
        relative(p, str(folder)) for p in local["image"]
    ]
    assert [{k: relative(v, root) for k, v in m.items()} for m in remote["masks"]] == [
        {k: relative(v, str(folder)) for k, v in m.items()} for m in local["masks"]
    ]
    assert remote.drop(columns=["image", "masks"]).equals(local.drop(columns=["image", "masks"]))
    builder = TruthBuilder(size=SIZE, template="{}", segment=FINDINGS)
    for (_, near), (_, far) in zip(local.iterrows(), remote.iterrows(), strict=True):
        here, there = (
            builder.build(near.to_dict(), (SIZE, SIZE)),
            builder.build(far.to_dict(), (SIZE, SIZE)),
        )
        assert here.boxes == there.boxes and set(here.masks) == set(there.masks)
        assert all(np.array_equal(here.masks[k], there.masks[k]) for k in here.masks)
    assert any(len(m) for m in remote["masks"])
