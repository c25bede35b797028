"""Exclusion lists (docs/data.md): MS-CXR's images kept out of MIMIC-CXR's prepared shards."""

from __future__ import annotations

from pathlib import Path

import boto3
import pandas as pd
import pyarrow.parquet as pq
import pytest

from radzero.cli.options import command_parser, parse_config
from radzero.config import load_config
from radzero.data.prepare import mark_excluded, read_exclusion_list
from radzero.platform.preprocess import PreprocessJobConfig, preprocess, read_prepared
from tests.test_benchmarks import MSCXR_HEADER
from tests.test_mimic import write_mimic

MSCXR_NAME = "MS_CXR_Local_Alignment_v1.1.0.csv"
# MS-CXR boxes on two images of write_mimic's tree (one without a report) and on one image the
# tree does not hold; 02aa804e has two boxes, so two rows of the file.
MSCXR_ROWS = [
    "02aa804e,Pleural Effusion,Small left effusion,"
    "files/p10/p10000032/s50414267/02aa804e.jpg,4,4,10,10,32,32,test",
    "02aa804e,Atelectasis,Basal atelectasis,"
    "files/p10/p10000032/s50414267/02aa804e.jpg,2,20,8,6,32,32,test",
    "8e6f1a2b,Cardiomegaly,Enlarged heart,"
    "files/p11/p11000011/s51029426/8e6f1a2b.jpg,8,8,16,12,32,32,val",
    "ffffffff,Edema,Mild edema,files/p12/p12000000/s52000000/ffffffff.jpg,1,1,5,5,32,32,train",
]


def write_mscxr(folder: Path) -> Path:
    """MS-CXR's label file as published (one row per box) in ``folder``."""
    path = folder / MSCXR_NAME
    path.write_text(MSCXR_HEADER + "\n".join(MSCXR_ROWS) + "\n")
    return path


def test_mscxr_images_are_quarantined_never_prepared_and_counted(ray_local, tmp_path) -> None:
    root = tmp_path / "mimic"
    write_mimic(root)
    mscxr = str(write_mscxr(root))
    extra = tmp_path / "also.csv"
    extra.write_text("dicom_id,note\n2a2277a9,re-read\n")
    config = PreprocessJobConfig(resolutions=[32], exclude=[mscxr, str(extra)])
    out = tmp_path / "out"
    summary = preprocess(str(root), str(out), config)

    # 8e6f1a2b also lacks its report: the exclusion is its reason, found first.
    excluded = {"02aa804e": mscxr, "8e6f1a2b": mscxr, "2a2277a9": str(extra)}
    assert summary["rows_in"] == 4 and summary["rows_out"] == 1
    assert summary["quarantined"] == 3 and summary["excluded"] == 3
    assert summary["quarantine_reasons"] == {f"excluded: {mscxr}": 2, f"excluded: {extra}": 1}
    assert summary["exclude"] == [mscxr, str(extra)]
    prepared = read_prepared(str(out), 32).to_pandas()
    assert list(prepared["dicom_id"]) == ["174413ec"]
    assert "excluded" not in prepared.columns
    quarantine = pq.read_table(out / "quarantine" / "quarantine.parquet").to_pandas()
    assert dict(zip(quarantine["dicom_id"], quarantine["error"], strict=True)) == {
        dicom: f"excluded: {uri}" for dicom, uri in excluded.items()
    }
    assert all(quarantine["content_hash"] == "")  # never read

    # The lists are part of the run: the same config returns the finished run, another list
    # prepares again (2a2277a9, no longer excluded, has no finding-sentence in its report).
    assert preprocess(str(root), str(out), config) == summary
    fewer = preprocess(str(root), str(out), PreprocessJobConfig(resolutions=[32], exclude=[mscxr]))
    assert fewer["excluded"] == 2 and fewer["quarantined"] == 3
    assert fewer["quarantine_reasons"] == {f"excluded: {mscxr}": 2, "no sentences": 1}


def test_an_exclusion_list_reads_from_s3_and_marks_rows_by_dicom_id(tmp_path, s3_bucket) -> None:
    write_mscxr(tmp_path)
    (tmp_path / "ids.csv").write_text("dicom_id\n 174413ec \n\n")
    client = boto3.client("s3")
    for name in (MSCXR_NAME, "ids.csv"):
        client.upload_file(str(tmp_path / name), s3_bucket, f"lists/{name}")
    mscxr, ids = f"s3://{s3_bucket}/lists/{MSCXR_NAME}", f"s3://{s3_bucket}/lists/ids.csv"
    lists = {uri: read_exclusion_list(uri) for uri in (mscxr, ids)}
    assert lists == {mscxr: {"02aa804e", "8e6f1a2b", "ffffffff"}, ids: {"174413ec"}}
    # Rows without a dicom_id (any manifest but MIMIC's, unless it has the column) stay in.
    frame = pd.DataFrame({"image": ["a", "b", "c", "d"], "dicom_id": ["8e6f1a2b", "", None, "x"]})
    assert list(mark_excluded(frame, lists)["excluded"]) == [mscxr, "", "", ""]
    assert list(mark_excluded(frame.drop(columns="dicom_id"), lists)["excluded"]) == [""] * 4


def test_bad_exclusion_lists_are_refused_before_any_work(tmp_path) -> None:
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "empty.csv").write_text("")
    (lists / "header.csv").write_text("dicom_id,note\n")
    (lists / "blank.csv").write_text("dicom_id\n\n \n")
    (lists / "other.csv").write_text("image,study_id\na.jpg,1\n")
    for name, error, match in (
        ("missing.csv", FileNotFoundError, "exclusion list .*missing.csv does not exist"),
        ("empty.csv", ValueError, "empty.csv cannot be parsed as CSV"),
        ("header.csv", ValueError, "exclusion list .*header.csv lists no dicom_id"),
        ("blank.csv", ValueError, "exclusion list .*blank.csv lists no dicom_id"),
        ("other.csv", ValueError, r"other.csv lacks columns \['dicom_id'\]"),
    ):
        with pytest.raises(error, match=match):
            read_exclusion_list(str(lists / name))
        # The lists are read first: nothing else is looked at (this manifest does not exist).
        config = PreprocessJobConfig(exclude=[str(lists / name)])
        with pytest.raises(error, match=match):
            preprocess(str(tmp_path / "no-manifest.csv"), str(tmp_path / "out"), config)
    assert not (tmp_path / "out").exists()

    # MS-CXR's file is checked by the MS-CXR reader; with both releases in one folder it reads
    # 1.1.0, so naming 1.0.0 there is refused rather than read as the other file.
    write_mscxr(lists)
    (lists / "MS_CXR_Local_Alignment_v1.0.0.csv").write_text(
        MSCXR_HEADER.replace(",split", "") + MSCXR_ROWS[0].rsplit(",", 1)[0] + "\n"
    )
    with pytest.raises(ValueError, match=r"takes MS_CXR_Local_Alignment_v1\.1\.0\.csv beside it"):
        read_exclusion_list(str(lists / "MS_CXR_Local_Alignment_v1.0.0.csv"))
    (lists / MSCXR_NAME).write_text(MSCXR_HEADER + MSCXR_ROWS[0].replace("Pleural", "Plural"))
    with pytest.raises(ValueError, match="unknown category_name 'Plural Effusion'"):
        read_exclusion_list(str(lists / MSCXR_NAME))


def test_the_exclude_option_is_a_list_of_uris_resolved_like_every_path(
    tmp_path, monkeypatch
) -> None:
    with pytest.raises(ValueError, match=r"config exclude must be a list of strings, got 'a\.csv'"):
        load_config(PreprocessJobConfig, overrides=["exclude=a.csv"])
    with pytest.raises(ValueError, match=r"config exclude\[0\] must be a string, got 1"):
        load_config(PreprocessJobConfig, overrides=["exclude=[1]"])
    for given in (["a.csv", "a.csv"], [""]):
        with pytest.raises(ValueError, match="config exclude has an empty or repeated URI"):
            PreprocessJobConfig(exclude=given)
    assert PreprocessJobConfig().exclude == [] and PreprocessJobConfig().exclude is not (
        PreprocessJobConfig().exclude
    )
    monkeypatch.setenv("RADZERO_ROOT", str(tmp_path))
    parser = command_parser("preprocess", "Preprocess.", PreprocessJobConfig)
    argv = ["--set", "exclude=[lists/ms.csv, s3://bucket/ids.csv, /abs/ids.csv]"]
    _, config = parse_config(parser, PreprocessJobConfig, argv, "preprocess")
    assert config.exclude == [str(tmp_path / "lists/ms.csv"), "s3://bucket/ids.csv", "/abs/ids.csv"]
