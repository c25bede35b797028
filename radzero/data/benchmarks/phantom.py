"""Phantoms: a folder written by :func:`radzero.data.phantom.write_dataset`, read as a benchmark."""

from __future__ import annotations

import json

import pandas as pd

from radzero import storage
from radzero.data.benchmarks._base import Benchmark, Box, find_file, numbers, read_table, require
from radzero.data.phantom import FINDINGS

_SPLITS = ("train", "val", "test")
_CORNERS = ("x1", "y1", "x2", "y2")


class Phantom(Benchmark):
    """Synthetic chest radiographs: ``manifest.csv`` with ``images/`` and ``masks/`` beside it.

    One row per image, ``split`` as written (train/val/test). The classes are the generator's
    FINDINGS, named as it names them ("pleural effusion", ...); the generator knows every label
    (0/1), a blank cell would be NaN. ``boxes`` are the masks' bounding boxes in inclusive pixels
    of the image, each with its ``location`` ("left costophrenic angle"; "" for cardiomegaly).
    ``masks`` maps each present finding to the URI of its mask under ``root`` (a PNG of the
    image's size, 0 outside and 255 inside). There are no ``height``/``width`` columns: the size
    is not in the manifest (the images are square). Then ``patient_id``, ``sentences`` (the
    ground-truth finding-sentences, a list) and ``report``.
    """

    name = "phantom"
    pathologies = FINDINGS
    files = ("manifest.csv",)

    def _read(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        uri = find_file(self.root, self.files)
        table = read_table(uri)
        written = [
            "image",
            "report",
            "sentences",
            "split",
            "patient_id",
            *FINDINGS,
            "boxes",
            "masks",
        ]
        require(table, written, uri)
        unknown = sorted(set(table["split"]) - set(_SPLITS))
        if unknown:
            raise ValueError(f"{uri}: unknown split {unknown[0]!r} (expected one of {_SPLITS})")
        labels = pd.DataFrame({name: numbers(table[name], uri, name) for name in FINDINGS})
        known = labels.to_numpy()[labels.notna().to_numpy()]
        if not set(known) <= {0.0, 1.0}:
            raise ValueError(f"{uri}: a finding column holds {sorted(set(known))}, not 0/1")
        boxes, masks, sentences = [], [], []
        for image, box_cell, mask_cell, sentence_cell in zip(
            table["image"], table["boxes"], table["masks"], table["sentences"], strict=True
        ):
            boxes.append([_box(box, uri, image) for box in _json(box_cell, uri, image, list)])
            mask_files = _json(mask_cell, uri, image, dict)
            if not set(mask_files) <= set(FINDINGS) or not all(
                isinstance(path, str) for path in mask_files.values()
            ):
                raise ValueError(f"{uri}: {image}: masks {mask_files} are not finding -> file")
            masks.append({k: storage.join(self.root, v) for k, v in mask_files.items()})
            sentences.append(_json(sentence_cell, uri, image, list))
        rows = pd.DataFrame(
            {
                "image": [storage.join(self.root, path) for path in table["image"]],
                "split": table["split"],
                "boxes": boxes,
                "masks": masks,
                "patient_id": table["patient_id"],
                "sentences": sentences,
                "report": table["report"],
            }
        )
        return table, rows, labels


def _json(cell: str, uri: str, image: str, kind: type) -> list | dict:
    """A cell's JSON list or object (empty when the cell is blank)."""
    if not cell.strip():
        return kind()
    try:
        value = json.loads(cell)
    except ValueError as err:
        raise ValueError(f"{uri}: {image}: {cell[:40]!r} is not JSON ({err})") from None
    if not isinstance(value, kind):
        raise ValueError(f"{uri}: {image}: {cell[:40]!r} is not a JSON {kind.__name__}")
    return value


def _box(box: object, uri: str, image: str) -> Box:
    """A written box with its corners checked, in the readers' key order."""
    if not isinstance(box, dict) or box.get("finding") not in FINDINGS:
        raise ValueError(f"{uri}: {image}: box {box!r} names no known finding")
    corners = {key: box.get(key) for key in _CORNERS}
    if not all(isinstance(v, int) for v in corners.values()) or not (
        0 <= corners["x1"] <= corners["x2"] and 0 <= corners["y1"] <= corners["y2"]
    ):
        raise ValueError(f"{uri}: {image}: box {box!r} lacks integer corners x1 <= x2, y1 <= y2")
    return {"finding": box["finding"], **corners, "location": str(box.get("location", ""))}
