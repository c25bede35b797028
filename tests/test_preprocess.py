"""Preprocessing and the feature cache end to end on a local S3 endpoint and a local Ray."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import boto3
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
from PIL import Image

from radzero import storage
from radzero.data import phantom
from radzero.data.hashing import content_hash, fingerprint, unit_interval
from radzero.data.images import read_image
from radzero.data.prepare import (
    BOX,
    MASK,
    SplitFractions,
    assign_splits,
    normalise_manifest,
    prepare_batch,
)
from radzero.data.splits import normalise_split
from radzero.platform import outputs
from radzero.platform.features import FeaturesJobConfig, compute_features, read_features
from radzero.platform.preprocess import PreprocessJobConfig, preprocess, read_prepared
from tests.conftest import TINY_VISION
from tests.test_images import png_claiming

GOOD = 12
NO_FINDINGS_REPORT = "EXAMINATION: Chest radiograph, PA view.\nCOMPARISON: None."


def _broken_rows(folder: Path, template: dict) -> list[dict]:
    """Rows that must each land in the quarantine, with the reason they must get."""
    images = folder / "images"
    good_png = (images / "000000.png").read_bytes()
    (images / "truncated.png").write_bytes(good_png[: len(good_png) // 3])
    (images / "notes.png").write_text("radiology notes, not pixels")
    noise = np.random.default_rng(0).integers(0, 255, (1400, 1400), dtype=np.uint8)
    Image.fromarray(noise).save(images / "huge.png")  # about 2 MB of incompressible noise
    (images / "bomb.png").write_bytes(png_claiming(50_000, 50_000))  # 2.5 Gpx in its header
    row = {**template, "sentences": ""}
    return [
        {**row, "image": "images/missing.png", "expect": "missing file"},
        {**row, "image": "images/truncated.png", "expect": "corrupt image"},
        {**row, "image": "images/notes.png", "expect": "unsupported format"},
        {**row, "image": "images/huge.png", "expect": "oversized image"},
        {**row, "image": "images/bomb.png", "expect": "oversized image"},
        {**row, "image": "images/000001.png", "report": "", "expect": "empty report"},
        {
            **row,
            "image": "images/000002.png",
            "report": NO_FINDINGS_REPORT,
            "expect": "no sentences",
        },
    ]


@pytest.fixture
def raw_on_s3(tmp_path, s3_bucket) -> tuple[str, pd.DataFrame, pd.DataFrame]:
    """A phantom set with broken rows uploaded to s3://bucket/raw/."""
    folder = tmp_path / "raw"
    phantom.write_dataset(folder, GOOD, size=64, seed=3)
    frame = pd.read_csv(folder / "manifest.csv", keep_default_na=False)
    frame.loc[:2, "sentences"] = ""  # these three get their sentences from the report (rules)
    broken = pd.DataFrame(_broken_rows(folder, frame.iloc[0].to_dict()))
    manifest = pd.concat([frame, broken.drop(columns="expect")], ignore_index=True)
    manifest.to_csv(folder / "manifest.csv", index=False)
    client = boto3.client("s3")
    for path in folder.rglob("*"):
        if path.is_file():
            client.upload_file(str(path), s3_bucket, f"raw/{path.relative_to(folder)}")
    return f"s3://{s3_bucket}", frame, broken


def test_preprocess_then_features_on_s3(ray_local, raw_on_s3) -> None:
    root, good, broken = raw_on_s3
    config = PreprocessJobConfig(resolutions=[32, 64], max_image_mb=1.0)
    summary = preprocess(f"{root}/raw/manifest.csv", f"{root}/out", config)

    assert summary["rows_in"] == GOOD + len(broken)
    assert summary["rows_out"] == GOOD and summary["quarantined"] == len(broken)
    assert summary["quarantine_reasons"] == dict(broken["expect"].value_counts())
    assert summary["sentence_sources"] == {"manifest": GOOD - 3, "rules": 3}
    assert sum(summary["splits"].values()) == GOOD
    assert json.loads(storage.read_text(f"{root}/out/summary.json")) == summary

    quarantine = pq.read_table(
        storage.resolve(f"{root}/out/quarantine/quarantine.parquet")[1],
        filesystem=storage.resolve(root)[0],
    ).to_pandas()
    names = quarantine["source"].str.rsplit("/", n=1).str[-1]
    by_name = dict(zip(names, quarantine["error"], strict=True))
    expected = dict(
        zip(broken["image"].str.rsplit("/", n=1).str[-1], broken["expect"], strict=True)
    )
    assert by_name == expected
    assert (quarantine["reason"] != "").all()
    schema = pq.read_schema(
        storage.resolve(f"{root}/out/quarantine/quarantine.parquet")[1],
        filesystem=storage.resolve(root)[0],
    )
    assert schema.field("boxes").type == pa.list_(BOX)  # the row as prepared, boxes typed

    for resolution in (32, 64):
        rows = read_prepared(f"{root}/out", resolution).to_pandas().sort_values("row_id")
        assert len(rows) == GOOD
        assert {read_image(png).shape for png in rows["image"]} == {(resolution, resolution)}
        want = [json.loads(s) for s in good["sentences"].iloc[3:]]
        assert [list(s) for s in rows["sentences"].iloc[3:]] == want
        assert all(len(s) > 0 for s in rows["sentences"].iloc[:3])
        assert list(rows["split"]) == list(good["split"])  # given splits are kept

    # Same manifest and config: nothing is recomputed or rewritten.
    marker = outputs.read_marker(f"{root}/out")
    files = storage.list_files(f"{root}/out")
    assert preprocess(f"{root}/raw/manifest.csv", f"{root}/out", config) == summary
    assert (
        outputs.read_marker(f"{root}/out") == marker and storage.list_files(f"{root}/out") == files
    )

    features = FeaturesJobConfig(vision=dict(TINY_VISION), batch_size=4)
    cached = compute_features(f"{root}/out", f"{root}/cache", features)
    assert cached["images"] == GOOD and cached["resolution"] == 64
    assert cached["token_shape"] == [1 + (64 // 16) ** 2, 64]
    assert cached["bytes_per_image"] == 17 * 64 * 2
    tokens = read_features(f"{root}/cache/features/{cached['key']}").to_pandas()
    assert len(tokens) == GOOD and "image" not in tokens.columns
    stacked = np.stack(list(tokens["tokens"]))
    assert stacked.shape == (GOOD, 17, 64) and stacked.dtype == np.float16
    assert np.isfinite(stacked).all() and stacked.std() > 0.1
    assert compute_features(f"{root}/out", f"{root}/cache", features) == cached


def test_a_crashed_run_is_never_read_and_a_rerun_replaces_it(ray_local, tmp_path) -> None:
    source = tmp_path / "src"
    phantom.write_dataset(source, 4, size=64, seed=1)
    out = tmp_path / "out"
    stale = out / "prepared" / "32" / "partial.parquet"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half a file")  # what a crash mid-write leaves behind
    with pytest.raises(FileNotFoundError, match="no finished preprocess output"):
        read_prepared(str(out), 32)
    summary = preprocess(str(source), str(out), PreprocessJobConfig(resolutions=[32]))
    assert summary["rows_out"] == 4 and not stale.exists()
    # The job turns Ray Data's operator reservation off for its own dataset only.
    assert ray.data.DataContext.get_current().op_resource_reservation_enabled
    assert read_prepared(str(out), 32).count() == 4
    assert not (out / outputs.STAGING).exists() or not any((out / outputs.STAGING).iterdir())


def test_a_shuffled_read_draws_a_new_seeded_file_order_for_each_execution(
    ray_local, tmp_path
) -> None:
    out = str(tmp_path / "out")
    staged = Path(outputs.staging(out)) / "tokens"
    staged.mkdir(parents=True)
    for row_id in range(8):
        pq.write_table(pa.table({"row_id": [row_id]}), staged / f"{row_id}.parquet")
    outputs.commit(str(staged.parent), out, {}, "run")

    def epochs(seed: int | None) -> list[list[int]]:
        rows = outputs.read_parquet(out, "features", "tokens", shuffle_seed=seed)
        rows.context.execution_options.preserve_order = True  # the file order, unblurred
        return [[row["row_id"] for row in rows.iter_rows()] for _ in range(3)]

    shuffled = epochs(0)
    assert all(sorted(order) == list(range(8)) for order in shuffled)
    assert len({tuple(order) for order in shuffled}) == 3
    assert epochs(0) == shuffled  # the same seed, the same orders
    assert epochs(None) == [list(range(8))] * 3
    # The task-based reader is switched on for these reads only.
    assert ray.data.DataContext.get_current().use_datasource_v2


def test_prepared_shards_and_tokens_hold_boxes_and_masks_as_typed_lists(
    ray_local, tmp_path
) -> None:
    raw = tmp_path / "raw"
    phantom.write_dataset(raw, 6, size=64, seed=3)
    frame = pd.read_csv(raw / "manifest.csv", keep_default_na=False)
    frame.loc[:1, "boxes"], frame.loc[:1, "masks"] = "[]", "{}"  # a whole shard without any
    frame.to_csv(raw / "manifest.csv", index=False)
    out = tmp_path / "out"
    preprocess(str(raw), str(out), PreprocessJobConfig(resolutions=[64], batch_rows=2))

    shards = sorted((out / "prepared" / "64").glob("*.parquet"))
    assert len(shards) == 3
    for shard in shards:
        schema = pq.read_schema(shard)
        assert schema.field("boxes").type == pa.list_(BOX)
        assert schema.field("masks").type == pa.list_(MASK)
    corners = ("x1", "y1", "x2", "y2")
    want_boxes = [
        [
            {"finding": b["finding"], "location": b["location"]} | {k: float(b[k]) for k in corners}
            for b in json.loads(cell)
        ]
        for cell in frame["boxes"]
    ]
    want_masks = [
        [{"finding": k, "uri": str(raw / v)} for k, v in json.loads(cell).items()]
        for cell in frame["masks"]
    ]
    assert sum(map(len, want_boxes[2:])) > 0 and sum(map(len, want_masks[2:])) > 0
    rows = read_prepared(str(out), 64).to_pandas().sort_values("row_id")
    assert [[dict(b) for b in v] for v in rows["boxes"]] == want_boxes
    assert [[dict(m) for m in v] for v in rows["masks"]] == want_masks
    assert all(type(b["x1"]) is float for v in rows["boxes"] for b in v)

    features = FeaturesJobConfig(vision=dict(TINY_VISION), batch_size=2)
    cached = compute_features(str(out), str(tmp_path / "cache"), features)
    target = tmp_path / "cache" / "features" / cached["key"]
    files = sorted((target / "tokens").glob("*.parquet"))
    assert files and all(pq.read_schema(f).field("boxes").type == pa.list_(BOX) for f in files)
    assert all(pq.read_schema(f).field("masks").type == pa.list_(MASK) for f in files)
    rows = read_features(str(target)).to_pandas().sort_values("row_id")
    assert [[dict(b) for b in v] for v in rows["boxes"]] == want_boxes


def test_a_batch_is_prepared_without_ray(tmp_path) -> None:
    from radzero.data.manifest import load_manifest

    phantom.write_dataset(tmp_path, 2, size=64, seed=0)
    manifest = load_manifest(tmp_path)
    frame = normalise_manifest(manifest, str(tmp_path))
    prepared = prepare_batch(assign_splits(frame, SplitFractions()), [32], max_bytes=2**20)
    assert list(prepared["error"]) == ["", ""]
    assert {read_image(png).shape for png in prepared["image_32"]} == {(32, 32)}
    assert list(prepared["boxes"]) == list(frame["boxes"])
    bare = normalise_manifest(pd.DataFrame({"image": ["a.png"], "report": ["x"]}), "m.csv")
    assert bare.loc[0, "boxes"] == [] and bare.loc[0, "masks"] == []
    corners = {"x1": 0, "y1": 0, "x2": 1, "y2": 1}
    for box, wrong in (
        ({"finding": "mass", "x1": 1}, r"lacks \['y1', 'x2', 'y2'\] or has unknown keys \[\]"),
        ({"finding": "mass", "phrase": "a mass", **corners}, r"unknown keys \['phrase'\]"),
        ("mass", "not an object"),
    ):
        with pytest.raises(ValueError, match=wrong):
            normalise_manifest(manifest.assign(boxes=[[box], []]), "m.csv")


def test_features_refuse_a_resolution_that_was_not_prepared(ray_local, tmp_path) -> None:
    source = tmp_path / "src"
    phantom.write_dataset(source, 2, size=64, seed=2)
    preprocess(str(source), str(tmp_path / "out"), PreprocessJobConfig(resolutions=[32]))
    with pytest.raises(ValueError, match=r"needs 64 px images .* holds only \[32\]"):
        compute_features(
            str(tmp_path / "out"), str(tmp_path), FeaturesJobConfig(vision=TINY_VISION)
        )


def test_split_is_per_patient_seeded_and_keeps_given_values() -> None:
    frame = pd.DataFrame(
        {
            "image": [f"i{k}" for k in range(400)],
            "patient_id": [f"p{k // 4}" for k in range(400)],  # four images per patient
            "study_id": "",
            "split": ["test"] + [""] * 399,
        }
    )
    split = assign_splits(frame, SplitFractions(train=0.6, val=0.2, test=0.2, seed=5))["split"]
    assert split.iloc[0] == "test"
    assert frame.assign(split=split)[1:].groupby("patient_id")["split"].nunique().max() == 1
    share = split.value_counts(normalize=True)
    assert abs(share["train"] - 0.6) < 0.12 and abs(share["val"] - 0.2) < 0.1
    again = assign_splits(frame.iloc[::-1], SplitFractions(train=0.6, val=0.2, test=0.2, seed=5))
    assert (again["split"].sort_index() == split).all()  # order-independent
    # The draws are pinned: a changed hash would move images between the splits.
    assert "".join(s[0] for s in split.iloc[::4][:30]) == "tvttttttvttttttttttvttvttttvtv"
    assert unit_interval("p0", 5) == 0.9777485442203466
    aliased = assign_splits(
        frame.assign(split=[" Validation", "dev", "VALIDATE"] * 133 + [""]), SplitFractions()
    )
    assert set(aliased["split"][:399]) == {"val"}
    with pytest.raises(ValueError, match=r"manifest: unknown split 'holdout'.*leave it empty"):
        assign_splits(frame.assign(split="holdout"), SplitFractions())


def test_one_split_table_and_one_fingerprint() -> None:
    assert [normalise_split(v) for v in ("train", " Val", "valid", "validate", "TEST")] == [
        "train",
        "val",
        "val",
        "val",
        "test",
    ]
    for bad in ("holdout", ""):
        with pytest.raises(ValueError, match=f"unknown split {bad!r}: use one of train, val"):
            normalise_split(bad)
    # One part hashes as itself (the feature cache's names and the held-out images stay put);
    # parts are joined by NUL, so moving text between parts changes the fingerprint.
    assert fingerprint("abc") == hashlib.sha256(b"abc").hexdigest()
    assert fingerprint("a", "b") == hashlib.sha256(b"a\0b").hexdigest() != fingerprint("ab")
    assert fingerprint("abc", length=8) == fingerprint("abc")[:8]
    assert content_hash(b"png") == hashlib.blake2b(b"png", digest_size=16).hexdigest()


def test_preprocess_config_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="resolutions"):
        PreprocessJobConfig(resolutions=[])
    with pytest.raises(ValueError, match="needs an llm section"):
        PreprocessJobConfig(sentences="llm")
    with pytest.raises(ValueError, match="sum to 1"):
        SplitFractions(train=0.5)


def test_manifest_in_each_format_reads_the_same(tmp_path) -> None:
    from radzero.data.manifest import read_manifest

    phantom.write_dataset(tmp_path, 3, size=64, seed=0)
    csv = read_manifest(tmp_path / "manifest.csv")
    for suffix in ("jsonl", "parquet"):
        path = tmp_path / f"manifest.{suffix}"
        plain = pd.read_csv(tmp_path / "manifest.csv", keep_default_na=False)
        for column in ("sentences", "boxes", "masks"):
            plain[column] = plain[column].map(json.loads)
        if suffix == "jsonl":
            plain.to_json(path, orient="records", lines=True)
        else:
            buffer = io.BytesIO()
            plain.drop(columns=["boxes", "masks"]).to_parquet(buffer)
            path.write_bytes(buffer.getvalue())
        other = read_manifest(path)
        assert list(other["image"]) == list(csv["image"])
        assert [list(s) for s in other["sentences"]] == list(csv["sentences"])


def test_llm_backend_inside_the_job_with_fallback_counted(ray_local, tmp_path) -> None:
    from radzero.data.sentences import extract_findings
    from radzero.platform.llm import LLMConfig
    from tests.llm_stub import StubLLM, expected_sentences

    phantom.write_dataset(tmp_path / "raw", 4, size=64, seed=5)
    frame = pd.read_csv(tmp_path / "raw" / "manifest.csv", keep_default_na=False)
    reports = ["#a Small effusion. No pneumothorax.", "#b ALWAYS_INVALID Possible nodule."]
    frame.loc[:1, "report"] = reports
    frame.loc[:1, "sentences"] = ""  # row 2 keeps its own sentences: never sent to the LLM
    # Row 3 is on an exclusion list: quarantined, and never sent to the LLM either.
    frame.loc[3, ["report", "sentences"]] = ["#c Large effusion.", ""]
    frame["dicom_id"] = ["d0", "d1", "d2", "d3"]
    frame.to_csv(tmp_path / "raw" / "manifest.csv", index=False)
    (tmp_path / "excluded.csv").write_text("dicom_id\nd3\n")
    stub = StubLLM(tmp_path / "canary").start()
    try:
        llm = LLMConfig(url=stub.url, model="stub", max_attempts=2)
        config = PreprocessJobConfig(
            resolutions=[64], sentences="llm", llm=llm, exclude=[str(tmp_path / "excluded.csv")]
        )
        summary = preprocess(str(tmp_path / "raw"), str(tmp_path / "out"), config)
    finally:
        stub.stop()
    assert summary["sentence_sources"] == {"llm": 1, "rules_fallback": 1, "manifest": 1}
    assert summary["excluded"] == summary["quarantined"] == 1
    assert stub.counts == {"#a": 1, "#b": 2}
    rows = read_prepared(str(tmp_path / "out"), 64).to_pandas().set_index("row_id")
    assert list(rows.loc[0, "sentences"]) == expected_sentences(reports[0])
    assert list(rows.loc[1, "sentences"]) == extract_findings(reports[1])
    assert list(rows.loc[2, "sentences"]) == json.loads(frame.loc[2, "sentences"])
