"""MS-CXR: phrase-grounding boxes on MIMIC-CXR images."""

from __future__ import annotations

import math
import re

import pandas as pd

from radzero import storage
from radzero.data.benchmarks._base import (
    Benchmark,
    find_file,
    numbers,
    one_hot,
    read_table,
    require,
    xywh_box,
)
from radzero.data.splits import normalise_split

_IDS = re.compile(r"p(\d+)/s(\d+)/")


class MSCXR(Benchmark):
    """MS-CXR: ``MS_CXR_Local_Alignment_v1.1.0.csv`` (or ``_v1.0.0``), one row per box, with
    ``path`` relative to the MIMIC-CXR(-JPG) root, which is taken to be ``root`` as well.

    Rows are merged per ``dicom_id``; each box carries its ``phrase`` (``label_text``). Only the
    annotated categories are known: 1 for them, NaN for the other classes (MS-CXR does not say
    that a finding is absent). ``split`` is the file's column (1.1.0); the 1.0.0 file has none,
    so its images are "test". ``height``/``width`` are image_height/image_width, the frame of the
    boxes.
    """

    name = "mscxr"
    pathologies = (
        "Atelectasis",
        "Cardiomegaly",
        "Consolidation",
        "Edema",
        "Lung Opacity",
        "Pleural Effusion",
        "Pneumonia",
        "Pneumothorax",
    )
    files = ("MS_CXR_Local_Alignment_v1.1.0.csv", "MS_CXR_Local_Alignment_v1.0.0.csv")

    def _read(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        uri = find_file(self.root, self.files)
        table = read_table(uri)
        sizes = ["x", "y", "w", "h", "image_width", "image_height"]
        require(table, ["dicom_id", "category_name", "label_text", "path", *sizes], uri)
        splits = list(table["split"]) if "split" in table else ["test"] * len(table)
        columns = [numbers(table[c], uri, c) for c in sizes]
        images: dict[str, dict] = {}
        for dicom, category, phrase, path, split, *size in zip(
            table["dicom_id"],
            table["category_name"],
            table["label_text"],
            table["path"],
            splits,
            *columns,
            strict=True,
        ):
            x, y, w, h, width, height = size
            if any(math.isnan(v) for v in size):
                raise ValueError(f"{uri}: a box of {dicom} lacks a coordinate or the image size")
            if category.strip() not in self.pathologies:
                raise ValueError(f"{uri}: unknown category_name {category!r}")
            try:
                split = normalise_split(split)
            except ValueError as err:
                raise ValueError(f"{uri}: {err}") from None
            image = {
                "path": path.strip(),
                "split": split,
                "height": int(height),
                "width": int(width),
            }
            entry = images.setdefault(dicom, {**image, "boxes": []})
            if any(entry[k] != v for k, v in image.items()):
                raise ValueError(f"{uri}: rows of {dicom} disagree on path, split or size")
            box = xywh_box(category.strip(), x, y, w, h, width, height)
            entry["boxes"].append({**box, "phrase": phrase})
        ids = [_IDS.search(entry["path"]) for entry in images.values()]
        rows = pd.DataFrame(
            {
                "image": [storage.join(self.root, e["path"]) for e in images.values()],
                "split": [e["split"] for e in images.values()],
                "boxes": [e["boxes"] for e in images.values()],
                "height": [e["height"] for e in images.values()],
                "width": [e["width"] for e in images.values()],
                "dicom_id": list(images),
                "patient_id": [m.group(1) if m else "" for m in ids],
                "study_id": [m.group(2) if m else "" for m in ids],
            }
        )
        findings = [[b["finding"] for b in e["boxes"]] for e in images.values()]
        labels = one_hot(findings, self.pathologies, rows.index).replace(0.0, math.nan)
        return table, rows, labels
