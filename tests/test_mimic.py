"""MIMIC-CXR's own layout read into the manifest, on disk and on a local S3 endpoint."""

from __future__ import annotations

import gzip
from pathlib import Path

import boto3
import numpy as np
import pytest
from PIL import Image

from radzero.data.manifest import load_manifest
from radzero.data.mimic import read_mimic

STUDIES = {  # (subject, study): (dicom ids, report text or None when the file is missing)
    ("10000032", "50414267"): (["02aa804e", "174413ec"], "FINDINGS: Small left effusion.\n"),
    ("10000032", "53189527"): (["2a2277a9"], "IMPRESSION: No acute process.\n"),
    ("11000011", "51029426"): (["8e6f1a2b"], None),
}
SPLITS = {"02aa804e": "train", "174413ec": "train", "2a2277a9": "validate", "8e6f1a2b": "test"}


def write_mimic(root: Path) -> None:
    """A tiny MIMIC-CXR(-JPG) tree with the published CSVs (the split one gzipped)."""
    for (subject, study), (dicoms, report) in STUDIES.items():
        folder = root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}"
        folder.mkdir(parents=True)
        for dicom in dicoms:
            Image.fromarray(np.full((32, 32), 128, np.uint8)).save(folder / f"{dicom}.jpg")
        if report is not None:
            folder.with_suffix(".txt").write_text(report)
    rows = ["dicom_id,study_id,subject_id,split"]
    rows += [
        f"{d},{study},{subject},{SPLITS[d]}"
        for (subject, study), (dicoms, _) in STUDIES.items()
        for d in dicoms
    ]
    with gzip.open(root / "mimic-cxr-2.0.0-split.csv.gz", "wt") as handle:
        handle.write("\n".join(rows) + "\n")
    (root / "mimic-cxr-2.0.0-metadata.csv").write_text(
        "dicom_id,subject_id,study_id,ViewPosition\n"
        "02aa804e,10000032,50414267,PA\n174413ec,10000032,50414267,LATERAL\n"
        "2a2277a9,10000032,53189527,AP\n8e6f1a2b,11000011,51029426,\n"
    )
    (root / "mimic-cxr-2.0.0-chexpert.csv").write_text(
        "subject_id,study_id,Cardiomegaly,Pleural Effusion\n"
        "10000032,50414267,,1.0\n10000032,53189527,0.0,-1.0\n"
    )


def check(frame, root: str) -> None:
    assert list(frame.columns[:2]) == ["image", "dicom_id"]
    assert len(frame) == 4
    first = frame[frame["dicom_id"] == "02aa804e"].iloc[0]
    assert first["image"] == f"{root}/files/p10/p10000032/s50414267/02aa804e.jpg"
    assert first["report"] == "FINDINGS: Small left effusion.\n"
    assert (first["patient_id"], first["study_id"], first["split"]) == (
        "10000032",
        "50414267",
        "train",
    )
    assert first["view"] == "PA" and first["Pleural Effusion"] == 1.0
    by_id = frame.set_index("dicom_id")
    assert by_id.loc["2a2277a9", "split"] == "val"
    # Uncertain (-1) reads as unknown, like a blank: one convention from reader to metric.
    assert np.isnan(by_id.loc["2a2277a9", "Pleural Effusion"])
    assert by_id.loc["2a2277a9", "Cardiomegaly"] == 0.0
    assert by_id.loc["8e6f1a2b", "report"] == ""  # missing report: quarantined by preprocessing
    assert np.isnan(by_id.loc["8e6f1a2b", "Cardiomegaly"])


def test_mimic_layout_on_disk(tmp_path) -> None:
    write_mimic(tmp_path)
    check(read_mimic(str(tmp_path)), str(tmp_path))
    check(load_manifest(tmp_path), str(tmp_path))


def test_mimic_layout_on_s3(tmp_path, s3_bucket) -> None:
    write_mimic(tmp_path)
    client = boto3.client("s3")
    for path in tmp_path.rglob("*"):
        if path.is_file():
            client.upload_file(str(path), s3_bucket, f"mimic/{path.relative_to(tmp_path)}")
    check(load_manifest(f"s3://{s3_bucket}/mimic"), f"s3://{s3_bucket}/mimic")


def test_a_folder_of_unknown_layout_is_named(tmp_path) -> None:
    with pytest.raises(ValueError, match="neither a manifest file"):
        load_manifest(tmp_path)


def test_a_csv_label_column_with_blanks_reads_as_numbers_with_nan(tmp_path) -> None:
    from radzero.data.manifest import read_manifest

    (tmp_path / "m.csv").write_text(
        "image,report,patient_id,Edema,view\na.png,x,0012,1,\nb.png,,0013,,PA\nc.png,y,,0,AP\n"
    )
    frame = read_manifest(tmp_path / "m.csv")
    assert frame["Edema"].tolist()[0::2] == [1.0, 0.0] and np.isnan(frame["Edema"][1])
    assert frame["patient_id"].tolist() == ["0012", "0013", ""]  # ids stay text
    assert frame["report"].tolist() == ["x", "", "y"] and frame["view"].tolist() == ["", "PA", "AP"]
