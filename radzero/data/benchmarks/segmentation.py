"""The segmentation benchmarks: SIIM-ACR pneumothorax (RLE masks) and RSNA pneumonia (boxes)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import pandas as pd

from radzero import storage
from radzero.data.benchmarks._base import (
    Benchmark,
    Box,
    file_name,
    find_file,
    numbers,
    one_hot,
    read_table,
    require,
    xywh_box,
)

SIZE = 1024  # every SIIM-ACR and RSNA pneumonia image is 1024 x 1024


def decode_rle(rle: str | Sequence[str], height: int, width: int) -> np.ndarray:
    """SIIM-ACR run-length encoding(s) as a boolean (height, width) mask.

    An encoding is "start length start length ...": each start counts pixels from the end of
    the previous run (from pixel 0 for the first), over the image flattened column by column
    (i.e. transposed). Several encodings of one image are OR-ed; "-1" (or "") is an empty mask.
    """
    mask = np.zeros(height * width, dtype=bool)
    for text in [rle] if isinstance(rle, str) else rle:
        values = _rle_values(text)
        position = 0
        for start, length in zip(values[0::2], values[1::2], strict=True):
            position += start
            if position + length > mask.size:
                raise ValueError(f"RLE run at {position}+{length} leaves a {height}x{width} image")
            mask[position : position + length] = True
            position += length
    return mask.reshape(width, height).T


def _rle_values(text: str) -> list[int]:
    text = text.strip()
    if text in ("", "-1"):
        return []
    try:
        values = [int(v) for v in text.split()]
    except ValueError:
        raise ValueError(f"RLE {text[:40]!r} holds something other than integers") from None
    if len(values) % 2 or any(v < 0 for v in values):
        raise ValueError(f"RLE {text[:40]!r} is not pairs of non-negative start and length")
    return values


class SIIM(Benchmark):
    """SIIM-ACR pneumothorax: ``train-rle.csv`` (header "ImageId, EncodedPixels", with the
    space) or ``stage_2_train.csv``; one row per mask, "-1" when there is none.

    ``rle`` lists the encodings of each image (``decode_rle`` OR-s them; [] for "-1" rows);
    Pneumothorax is 1 when an image has one. Images are DICOMs found by name
    (``<ImageId>.dcm``) anywhere under ``root``, since the published ``dicom-images-train``
    nests them by study and series; an image not found there is given as
    ``dicom-images-train/<ImageId>.dcm``. No split: all "test".
    """

    name = "siim"
    pathologies = ("Pneumothorax",)
    files = ("train-rle.csv", "stage_2_train.csv")
    images = "dicom-images-train"

    def _read(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        uri = find_file(self.root, self.files)
        table = read_table(uri)
        stripped = table.rename(columns=str.strip)  # train-rle.csv says " EncodedPixels"
        require(stripped, ["ImageId", "EncodedPixels"], uri)
        masks: dict[str, list[str]] = {}
        for image, rle in zip(stripped["ImageId"], stripped["EncodedPixels"], strict=True):
            if not rle.strip():
                raise ValueError(f"{uri}: {image} has a blank EncodedPixels (use -1)")
            try:
                values = _rle_values(rle)
            except ValueError as err:
                raise ValueError(f"{uri}: {image}: {err}") from None
            masks.setdefault(image.strip(), []).extend([rle.strip()] if values else [])
        found = {
            file_name(path)[: -len(".dcm")]: path for path in storage.list_files(self.root, ".dcm")
        }
        rows = pd.DataFrame(
            {
                "image": [
                    found.get(i) or storage.join(self.root, self.images, f"{i}.dcm") for i in masks
                ],
                "split": "test",
                "boxes": [[] for _ in masks],
                "rle": list(masks.values()),
                "height": SIZE,
                "width": SIZE,
                "image_id": list(masks),
            }
        )
        findings = [["Pneumothorax"] if rle else [] for rle in masks.values()]
        return table, rows, one_hot(findings, self.pathologies, rows.index)


class RSNA(Benchmark):
    """RSNA pneumonia: ``stage_2_train_labels.csv`` (or ``stage_1_train_labels.csv``), columns
    patientId, x, y, width, height, Target, one row per box; Target 0 rows have no box.

    Rows are merged per patient (one image each), the boxes (named "Pneumonia", the class the
    challenge detects) converted to inclusive pixels; images at
    ``stage_2_train_images/<patientId>.dcm`` (``stage_1_...`` for the stage 1 file). No split:
    all "test".
    """

    name = "rsna"
    pathologies = ("Pneumonia",)
    files: ClassVar[dict[str, str]] = {
        "stage_2_train_labels.csv": "stage_2_train_images",
        "stage_1_train_labels.csv": "stage_1_train_images",
    }

    def _read(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        uri = find_file(self.root, list(self.files))
        table = read_table(uri)
        coordinates = ["x", "y", "width", "height"]
        require(table, ["patientId", "Target", *coordinates], uri)
        values = [numbers(table[c], uri, c) for c in coordinates]
        targets: dict[str, str] = {}
        boxes: dict[str, list[Box]] = {}
        for patient, target, *box in zip(table["patientId"], table["Target"], *values, strict=True):
            patient, target = patient.strip(), target.strip()
            if target not in ("0", "1") or targets.setdefault(patient, target) != target:
                raise ValueError(f"{uri}: {patient} has Target {target!r} (expected one 0 or 1)")
            blank = [math.isnan(v) for v in box]
            if any(blank) != (target == "0") or any(blank) != all(blank):
                raise ValueError(f"{uri}: {patient}: Target {target} with box {box}")
            entries = boxes.setdefault(patient, [])
            if target == "1":
                entries.append(xywh_box("Pneumonia", *box, width=SIZE, height=SIZE))
        folder = self.files[file_name(uri)]
        rows = pd.DataFrame(
            {
                "image": [storage.join(self.root, folder, f"{p}.dcm") for p in boxes],
                "split": "test",
                "boxes": list(boxes.values()),
                "height": SIZE,
                "width": SIZE,
                "patient_id": list(boxes),
            }
        )
        findings = [["Pneumonia"] if targets[p] == "1" else [] for p in boxes]
        return table, rows, one_hot(findings, self.pathologies, rows.index)
