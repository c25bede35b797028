"""The NIH-derived benchmarks: ChestX-ray14 and ChestX-Det10."""

from __future__ import annotations

import csv
import io
import math
from typing import ClassVar

import pandas as pd

from radzero import storage
from radzero.data.benchmarks._base import (
    Benchmark,
    Box,
    find_file,
    find_optional,
    numbers,
    one_hot,
    read_json,
    require,
    xywh_box,
)

NIH_SIZE = 1024  # every published ChestX-ray14 PNG is 1024 x 1024; BBox_List_2017 refers to it


class ChestXray14(Benchmark):
    """NIH ChestX-ray14: ``Data_Entry_2017.csv`` (or ``_v2020``), optional ``BBox_List_2017.csv``
    and ``test_list.txt``; images at ``images/<Image Index>``.

    "No Finding" is the absence of all 14 labels. Boxes are named like the labels, so the
    box list's "Infiltrate" becomes "Infiltration". ``height``/``width`` are those of the
    published PNGs (1024), which the boxes refer to; the file's ``OriginalImage[Width,Height]``
    (the size before resizing) is kept as ``original_width``/``original_height``. With
    ``test_list.txt`` present its images are "test" and the others "train" (the published
    train_val list); without it every image is "test". ``bbox_csv`` is the box list as read
    (None without it).
    """

    name = "chestxray14"
    pathologies = (
        "Atelectasis",
        "Cardiomegaly",
        "Effusion",
        "Infiltration",
        "Mass",
        "Nodule",
        "Pneumonia",
        "Pneumothorax",
        "Consolidation",
        "Edema",
        "Emphysema",
        "Fibrosis",
        "Pleural_Thickening",
        "Hernia",
    )
    entry_files = ("Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv")
    box_file = "BBox_List_2017.csv"
    test_list = "test_list.txt"
    box_names: ClassVar[dict[str, str]] = {"Infiltrate": "Infiltration"}

    def _read(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        uri = find_file(self.root, self.entry_files)
        table = read_bracketed_csv(uri)
        width, height = "OriginalImage[Width]", "OriginalImage[Height]"
        require(table, ["Image Index", "Finding Labels", "Patient ID", "View Position"], uri)
        require(table, [width, height], uri)
        names = list(table["Image Index"])
        if len(set(names)) != len(names):
            raise ValueError(f"{uri}: Image Index repeats an image")
        findings = [self._findings(value, uri) for value in table["Finding Labels"]]
        labels = one_hot(findings, self.pathologies, table.index)
        original = {
            "original_height": _integers(table[height], uri, height),
            "original_width": _integers(table[width], uri, width),
        }

        self.bbox_csv = None
        boxes: dict[str, list[Box]] = {name: [] for name in names}
        box_uri = find_optional(self.root, [self.box_file])
        if box_uri is not None:
            self.bbox_csv = read_bracketed_csv(box_uri)
            for image, box in self._boxes(self.bbox_csv, box_uri):
                if image not in boxes:
                    raise ValueError(f"{box_uri}: {image} is not in {uri}")
                boxes[image].append(box)

        test_uri = find_optional(self.root, [self.test_list])
        if test_uri is None:
            splits = ["test"] * len(names)
        else:
            test = set(storage.read_text(test_uri).split())
            splits = ["test" if name in test else "train" for name in names]

        rows = pd.DataFrame(
            {
                "image": [storage.join(self.root, "images", name) for name in names],
                "split": splits,
                "boxes": [boxes[name] for name in names],
                "height": NIH_SIZE,
                "width": NIH_SIZE,
                **original,
                "patient_id": table["Patient ID"],
                "view": table["View Position"],
            },
            index=table.index,
        )
        return table, rows, labels

    def _findings(self, value: str, uri: str) -> list[str]:
        names = [v.strip() for v in value.split("|") if v.strip()]
        if not names:
            raise ValueError(f"{uri}: an image has an empty Finding Labels")
        unknown = set(names) - set(self.pathologies) - {"No Finding"}
        if unknown:
            raise ValueError(f"{uri}: unknown finding labels {sorted(unknown)}")
        return [n for n in names if n != "No Finding"]

    def _boxes(self, table: pd.DataFrame, uri: str) -> list[tuple[str, Box]]:
        columns = ["Bbox[x]", "Bbox[y]", "Bbox[w]", "Bbox[h]"]
        require(table, ["Image Index", "Finding Label", *columns], uri)
        values = list(zip(*(numbers(table[c], uri, c) for c in columns), strict=True))
        out = []
        for image, label, (x, y, w, h) in zip(
            table["Image Index"], table["Finding Label"], values, strict=True
        ):
            finding = self.box_names.get(label.strip(), label.strip())
            if finding not in self.pathologies:
                raise ValueError(f"{uri}: unknown finding label {label!r}")
            if any(math.isnan(v) for v in (x, y, w, h)):
                raise ValueError(f"{uri}: the box of {image} lacks a coordinate")
            out.append((image, xywh_box(finding, x, y, w, h, NIH_SIZE, NIH_SIZE)))
        return out


class ChestXDet10(Benchmark):
    """ChestX-Det10: ``train.json`` / ``test.json`` (a list of {"file_name", "syms", "boxes"})
    with images in ``train_data/`` / ``test_data/`` (the published zip names).

    The ten classes are annotated exhaustively, so a class without a box is 0. Boxes are
    published as [x1, y1, x2, y2] (left, top, right, bottom) and kept as inclusive coordinates.
    """

    name = "chestxdet10"
    pathologies = (
        "Atelectasis",
        "Calcification",
        "Consolidation",
        "Effusion",
        "Emphysema",
        "Fibrosis",
        "Fracture",
        "Mass",
        "Nodule",
        "Pneumothorax",
    )
    files: ClassVar[dict[str, tuple[str, str]]] = {
        "train.json": ("train", "train_data"),
        "test.json": ("test", "test_data"),
    }

    def _read(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        found = {f: find_optional(self.root, [f]) for f in self.files}
        if not any(found.values()):
            raise FileNotFoundError(f"{self.root}: none of {', '.join(self.files)} found")
        records, rows, findings = [], [], []
        for file, uri in found.items():
            if uri is None:
                continue
            split, folder = self.files[file]
            entries = read_json(uri)
            if not isinstance(entries, list):
                raise ValueError(f"{uri}: expected a JSON list of images")
            for entry in entries:
                boxes = self._boxes(entry, uri)
                records.append({**entry, "file": file})
                findings.append([box["finding"] for box in boxes])
                image = storage.join(self.root, folder, entry["file_name"])
                rows.append({"image": image, "split": split, "boxes": boxes})
        frame = pd.DataFrame(rows, columns=["image", "split", "boxes"])
        if frame["image"].duplicated().any():
            raise ValueError(f"{self.root}: an image is listed twice in {list(self.files)}")
        return pd.DataFrame(records), frame, one_hot(findings, self.pathologies, frame.index)

    def _boxes(self, entry: object, uri: str) -> list[Box]:
        if not isinstance(entry, dict) or not {"file_name", "syms", "boxes"} <= entry.keys():
            raise ValueError(f"{uri}: an entry lacks file_name, syms or boxes: {entry!r:.80}")
        syms, boxes = entry["syms"], entry["boxes"]
        if not isinstance(syms, list) or not isinstance(boxes, list) or len(syms) != len(boxes):
            raise ValueError(f"{uri}: {entry['file_name']}: syms and boxes do not pair up")
        out = []
        for sym, box in zip(syms, boxes, strict=True):
            if sym not in self.pathologies:
                raise ValueError(f"{uri}: {entry['file_name']}: unknown class {sym!r}")
            if (
                not isinstance(box, list)
                or len(box) != 4
                or not all(isinstance(v, int | float) for v in box)
            ):
                raise ValueError(f"{uri}: {entry['file_name']}: box {box!r} is not 4 numbers")
            x1, y1, x2, y2 = (math.floor(v + 0.5) for v in box)
            out.append({"finding": sym, "x1": x1, "y1": y1, "x2": x2, "y2": y2})
        return out


def read_bracketed_csv(uri: str) -> pd.DataFrame:
    """An NIH CSV, whose header cells like ``OriginalImage[Width,Height]`` are written unquoted.

    A naive split turns such a cell into "OriginalImage[Width" and "Height]" over as many data
    columns; here they become "OriginalImage[Width]" and "OriginalImage[Height]" (also when the
    cell is quoted). Columns without a name and without data (trailing commas) are dropped.
    """
    try:
        text = storage.read_bytes(uri).decode("utf-8-sig")
        lines = [row for row in csv.reader(io.StringIO(text)) if row]
    except (UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"{uri} cannot be parsed as CSV: {err}") from err
    if not lines:
        raise ValueError(f"{uri} is empty")
    names = _bracket_names(lines[0], uri)
    rows = []
    for number, row in enumerate(lines[1:], start=2):
        if len(row) > len(names) and any(cell.strip() for cell in row[len(names) :]):
            raise ValueError(f"{uri}: line {number} has {len(row)} cells, the header {len(names)}")
        rows.append((row + [""] * len(names))[: len(names)])
    table = pd.DataFrame(rows, columns=range(len(names)), dtype=str)
    keep = []
    for position, name in enumerate(names):
        if name:
            keep.append(position)
        elif any(table[position].str.strip() != ""):
            raise ValueError(f"{uri}: column {position + 1} holds data but has no name")
    table = table[keep]
    table.columns = [names[p] for p in keep]
    return table


def _bracket_names(fields: list[str], uri: str) -> list[str]:
    names: list[str] = []
    group: list[str] | None = None
    for field in (f.strip() for f in fields):
        if group is not None:
            group.append(field)
            if field.endswith("]"):
                names += _expand(",".join(group))
                group = None
        elif "[" in field and not field.endswith("]"):
            group = [field]
        elif "[" in field and "," in field:
            names += _expand(field)
        else:
            names.append(field)
    if group is not None:
        raise ValueError(f"{uri}: header cell {group[0]!r} opens a bracket that never closes")
    return names


def _expand(cell: str) -> list[str]:
    """ "Bbox [x,y,w,h]" -> ["Bbox[x]", "Bbox[y]", "Bbox[w]", "Bbox[h]"]."""
    prefix, inner = cell[:-1].split("[", 1)
    return [f"{prefix.strip()}[{part.strip()}]" for part in inner.split(",")]


def _integers(values: pd.Series, uri: str, column: str) -> list[int]:
    parsed = numbers(values, uri, column)
    if any(math.isnan(v) for v in parsed):
        raise ValueError(f"{uri}: {column} is blank for an image")
    return [int(v) for v in parsed]
