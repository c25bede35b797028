"""Readers for the paper's eight zero-shot benchmarks, from the files as the datasets publish them,
and for the phantom sets of :mod:`radzero.data.phantom`.

``read(name, root)`` returns the common manifest of one benchmark; ``root`` is a local folder or
an s3:// URI holding the published files (read through :mod:`radzero.storage`; images are never
opened, so the labels read without them). One reader class per dataset, torchxrayvision-style:
class attributes ``name`` and ``pathologies`` (the classes as the dataset names them, in a fixed
order) and, once constructed, ``csv`` (the raw table as read), ``labels`` (one 0/1 float column
per pathology, NaN where unknown) and ``frame`` (the manifest).

``NAMES`` are the paper's eight; ``READERS`` maps them and "phantom" to their classes, and
``read`` takes any of its keys.

The manifest has one row per image: ``image`` (the image's path or URI under ``root``, built
from the published relative path), ``split`` ("train" / "val" / "test" as published, "test"
where nothing is published), one float 0/1/NaN column per class, ``boxes`` (a list of
{"finding", "x1", "y1", "x2", "y2"} in inclusive pixel coordinates of the image under
``image``; MS-CXR boxes add "phrase", phantom boxes "location"; [] when none),
``height``/``width`` where known (NIH, RSNA, SIIM: 1024; MS-CXR: from its file), SIIM's
``rle``, the phantoms' ``masks`` (finding -> mask PNG URI), then dataset-specific columns
(``patient_id``, ``view``, ...). Box sizes (x, y, w, h) become x1 = round(x),
x2 = round(x + w) - 1, inside the image when its size is known.

A missing file raises FileNotFoundError naming ``root`` and the files looked for; a malformed
one raises ValueError naming the file. Where a published fact could not be confirmed, the
reader's docstring says what was chosen: ChestX-Det10's image folders (train_data/, test_data/)
and its [x1, y1, x2, y2] taken as inclusive; the CheXpert variants val_labels.csv and
test_labels.csv; SIIM's image layout; RSNA's stage_2_train_images/; MS-CXR's images under
``root`` at the CSV's ``path``; PadChest's ImageDir folders and its 193-label class list; the
Open-I class list, derived here from the MeSH headings.
"""

from __future__ import annotations

import os

import pandas as pd

from radzero.data.benchmarks._base import Benchmark
from radzero.data.benchmarks.chexpert import CheXpert
from radzero.data.benchmarks.mscxr import MSCXR
from radzero.data.benchmarks.nih import ChestXDet10, ChestXray14
from radzero.data.benchmarks.openi import OpenI
from radzero.data.benchmarks.padchest import PadChest
from radzero.data.benchmarks.phantom import Phantom
from radzero.data.benchmarks.segmentation import RSNA, SIIM, decode_rle

_PAPER = (CheXpert, ChestXray14, PadChest, OpenI, ChestXDet10, MSCXR, SIIM, RSNA)
NAMES: tuple[str, ...] = tuple(reader.name for reader in _PAPER)
READERS: dict[str, type[Benchmark]] = {reader.name: reader for reader in (*_PAPER, Phantom)}

__all__ = [
    "MSCXR",
    "NAMES",
    "READERS",
    "RSNA",
    "SIIM",
    "Benchmark",
    "CheXpert",
    "ChestXDet10",
    "ChestXray14",
    "OpenI",
    "PadChest",
    "Phantom",
    "decode_rle",
    "read",
]


def read(name: str, root: str | os.PathLike) -> pd.DataFrame:
    """The common manifest of benchmark ``name`` (a key of ``READERS``) read from ``root``."""
    if name not in READERS:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(READERS)}")
    return READERS[name](root).frame
