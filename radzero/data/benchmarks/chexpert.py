"""CheXpert's labelled validation and test sets."""

from __future__ import annotations

import math
import re
from typing import ClassVar

import pandas as pd

from radzero import storage
from radzero.data.benchmarks._base import (
    Benchmark,
    file_name,
    find_optional,
    numbers,
    read_table,
    require,
)

_FOLDERS = ("", "CheXpert-v1.0-small/", "CheXpert-v1.0/")
_PATIENT = re.compile(r"(patient\d+)")


class CheXpert(Benchmark):
    """CheXpert: ``valid.csv`` ("val") and ``test.csv`` ("test"), each read when present, at
    ``root`` or in a ``CheXpert-v1.0-small`` / ``CheXpert-v1.0`` folder under it.

    ``Path`` starts with the dataset folder ("CheXpert-v1.0-small/valid/...") or not
    ("test/..."); either way images are resolved beside the CSV, which sits in that folder.
    Labels: 1 and 0 as given; -1 (uncertain) and blank (unmentioned) are unknown, NaN (the
    validation and test sets are binary, so this matters for the training CSV's format only).
    ``view`` is AP/PA for frontal images, else the Frontal/Lateral value. ``csv`` holds the
    files read, one after the other, with the name of each row's file in ``file``.
    """

    name = "chexpert"
    pathologies = (
        "No Finding",
        "Enlarged Cardiomediastinum",
        "Cardiomegaly",
        "Lung Opacity",
        "Lung Lesion",
        "Edema",
        "Consolidation",
        "Pneumonia",
        "Atelectasis",
        "Pneumothorax",
        "Pleural Effusion",
        "Pleural Other",
        "Fracture",
        "Support Devices",
    )
    files: ClassVar[dict[str, tuple[str, ...]]] = {
        "val": ("valid.csv", "val_labels.csv"),
        "test": ("test.csv", "test_labels.csv"),
    }

    def _read(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        tables, rows, labels = [], [], []
        for split, names in self.files.items():
            uri = find_optional(self.root, [f + n for f in _FOLDERS for n in names])
            if uri is not None:
                table, part, part_labels = self._read_csv(uri, split)
                tables.append(table)
                rows.append(part)
                labels.append(part_labels)
        if not tables:
            looked = [f + n for f in _FOLDERS for names in self.files.values() for n in names]
            raise FileNotFoundError(f"{self.root}: none of {', '.join(looked)} found")
        return tuple(pd.concat(parts, ignore_index=True) for parts in (tables, rows, labels))

    def _read_csv(self, uri: str, split: str) -> tuple[pd.DataFrame, ...]:
        table = read_table(uri)
        require(table, ["Path", *self.pathologies], uri)
        folder = storage.parent(uri)
        paths = [_relative(p.strip()) for p in table["Path"]]
        labels = pd.DataFrame(
            {p: [_label(v, uri, p) for v in table[p]] for p in self.pathologies}, dtype=float
        )
        frontal = table["Frontal/Lateral"] if "Frontal/Lateral" in table else [""] * len(table)
        ap_pa = table["AP/PA"] if "AP/PA" in table else [""] * len(table)
        rows = pd.DataFrame(
            {
                "image": [storage.join(folder, p) for p in paths],
                "split": split,
                "boxes": [[] for _ in paths],
                "patient_id": [_patient(p) for p in paths],
                "view": [a.strip() or f.strip() for a, f in zip(ap_pa, frontal, strict=True)],
            }
        )
        return table.assign(file=file_name(uri)), rows, labels


def _relative(path: str) -> str:
    """``Path`` relative to the folder holding the CSV."""
    for prefix in _FOLDERS[1:]:
        if path.startswith(prefix):
            return path[len(prefix) :]
    return path


def _patient(path: str) -> str:
    match = _PATIENT.search(path)
    return match.group(1) if match else ""


def _label(value: str, uri: str, column: str) -> float:
    (number,) = numbers([value], uri, column)
    if math.isnan(number) or number == -1:
        return math.nan
    if number not in (0, 1):
        raise ValueError(f"{uri}: {column} holds {value!r}; expected 1, 0, -1 or blank")
    return number
