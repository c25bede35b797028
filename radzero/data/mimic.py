"""MIMIC-CXR's own layout as a manifest.

``root/files/pXX/pNNNNNNNN/sNNNNNNNN/<dicom_id>.jpg`` (MIMIC-CXR-JPG; ``.dcm`` and ``.png`` are
read too), the report of each study at ``root/files/pXX/pNNNNNNNN/sNNNNNNNN.txt`` (MIMIC-CXR), and
beside ``files/`` the published CSVs, plain or gzipped: ``mimic-cxr-2.0.0-split.csv`` (split per
image: train / validate / test), optionally ``mimic-cxr-2.0.0-metadata.csv`` (``ViewPosition``)
and ``mimic-cxr-2.0.0-chexpert.csv`` (labels per study: 1, 0, -1 uncertain, blank; read as
1.0, 0.0 and NaN for both uncertain and blank).
"""

from __future__ import annotations

import io
import re
from concurrent.futures import ThreadPoolExecutor

import pandas as pd

from radzero import storage
from radzero.data.splits import normalise_split

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".dcm")
_IMAGE = re.compile(r"/p(\d+)/s(\d+)/([^/]+)\.(?:jpe?g|png|dcm)$", re.IGNORECASE)
_REPORT_READERS = 16


def is_mimic_layout(root: str) -> bool:
    """Whether ``root`` looks like MIMIC-CXR: a ``files/`` folder and the split CSV."""
    return storage.exists(storage.join(root, "files")) and _find_csv(root, "split") is not None


def read_mimic(root: str) -> pd.DataFrame:
    """One manifest row per image: image, dicom_id (what exclusion lists match), report, split,
    study_id, patient_id, view, labels."""
    split_csv = _find_csv(root, "split")
    if split_csv is None:
        raise FileNotFoundError(f"{root}: no mimic-cxr-2.0.0-split.csv(.gz) beside files/")
    rows = []
    for uri in storage.list_files(storage.join(root, "files")):
        match = _IMAGE.search(uri)
        if match and uri.lower().endswith(IMAGE_SUFFIXES):
            subject, study, dicom = match.groups()
            rows.append(
                {
                    "image": uri,
                    "dicom_id": dicom,
                    "patient_id": subject,
                    "study_id": study,
                    "report_uri": uri[: uri.rindex("/")] + ".txt",
                }
            )
    if not rows:
        raise ValueError(f"{root}: no images under files/pXX/pNNN/sNNN/")
    frame = pd.DataFrame(rows)

    splits = _read_csv(split_csv, dtype=str)[["dicom_id", "split"]]
    frame = frame.merge(splits, on="dicom_id", how="left")
    frame["split"] = [normalise_split(s) if isinstance(s, str) else "" for s in frame["split"]]
    metadata = _find_csv(root, "metadata")
    if metadata is not None:
        views = _read_csv(metadata, dtype=str)[["dicom_id", "ViewPosition"]]
        frame = frame.merge(
            views.rename(columns={"ViewPosition": "view"}), on="dicom_id", how="left"
        )
        frame["view"] = frame["view"].fillna("")
    labels_csv = _find_csv(root, "chexpert")
    if labels_csv is not None:
        labels = _read_csv(labels_csv, dtype={"subject_id": str, "study_id": str})
        labels = labels.drop(columns=["subject_id"]).drop_duplicates("study_id")
        classes = [c for c in labels.columns if c != "study_id"]
        # One label convention (docs/data.md): uncertain (-1) is unknown, like a blank.
        labels[classes] = labels[classes].mask(labels[classes] == -1)
        frame = frame.merge(labels, on="study_id", how="left")

    frame["report"] = _read_reports(list(frame["report_uri"]))
    return frame.drop(columns=["report_uri"]).sort_values("image").reset_index(drop=True)


def _find_csv(root: str, kind: str) -> str | None:
    for name in (f"mimic-cxr-2.0.0-{kind}.csv", f"mimic-cxr-2.0.0-{kind}.csv.gz"):
        uri = storage.join(root, name)
        if storage.exists(uri):
            return uri
    return None


def _read_csv(uri: str, **kwargs) -> pd.DataFrame:
    compression = "gzip" if uri.endswith(".gz") else None
    return pd.read_csv(io.BytesIO(storage.read_bytes(uri)), compression=compression, **kwargs)


def _read_reports(uris: list[str]) -> list[str]:
    """Each study's report text ("" when the file is missing: the row is quarantined later)."""

    def read(uri: str) -> str:
        try:
            return storage.read_text(uri)
        except FileNotFoundError:
            return ""

    unique = sorted(set(uris))
    with ThreadPoolExecutor(_REPORT_READERS) as pool:
        texts = dict(zip(unique, pool.map(read, unique), strict=True))
    return [texts[uri] for uri in uris]
