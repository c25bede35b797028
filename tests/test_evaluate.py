"""The evaluation job end to end on phantoms written in two benchmarks' published formats."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from radzero import cli, storage
from radzero.config import from_dict
from radzero.data import benchmarks, phantom
from radzero.data.images import read_image, to_pixels
from radzero.eval import metrics, scoring
from radzero.model import RadZero, RadZeroConfig
from radzero.platform.evaluate import EvaluateJobConfig, evaluate
from tests.conftest import TINY_CONFIG
from tests.test_benchmarks import encode_rle
from tests.test_images import _write_dicom

# Phantom findings under the names ChestX-Det10 gives them.
DET10_NAMES = {
    "pleural effusion": "Effusion",
    "pneumothorax": "Pneumothorax",
    "consolidation": "Consolidation",
    "nodule": "Nodule",
    "mass": "Mass",
}
SIIM_SIZE = 1024


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    """A tiny model at 64 px (untrained: the job's plumbing is what is tested)."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model")
    RadZero(RadZeroConfig.from_dict(TINY_CONFIG)).save_pretrained(folder)
    return str(folder)


def _cases(count: int, size: int, prevalence: float = 0.5) -> list[phantom.PhantomCase]:
    return [
        phantom.generate_case(np.random.default_rng([7, i]), size, prevalence, 8)
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def chestxdet10(tmp_path_factory) -> Path:
    """ChestX-Det10's test.json + test_data/ of 20 phantoms at 64 px, and one corrupt image."""
    root = tmp_path_factory.mktemp("chestxdet10")
    (root / "test_data").mkdir()
    entries = []
    for i, case in enumerate(_cases(20, 64)):
        name = f"{36200 + i}.png"
        Image.fromarray(case.image).save(root / "test_data" / name)
        kept = [b for b in case.boxes if b["finding"] in DET10_NAMES]
        entries.append(
            {
                "file_name": name,
                "syms": [DET10_NAMES[b["finding"]] for b in kept],
                "boxes": [[b["x1"], b["y1"], b["x2"], b["y2"]] for b in kept],
            }
        )
    (root / "test_data" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    entries.append({"file_name": "broken.png", "syms": ["Mass"], "boxes": [[1, 1, 9, 9]]})
    (root / "test.json").write_text(json.dumps(entries))
    return root


@pytest.fixture(scope="module")
def siim(tmp_path_factory) -> Path:
    """SIIM's train-rle.csv + DICOMs of 24 phantoms upscaled to 1024 px (pneumothorax masks)."""
    root = tmp_path_factory.mktemp("siim")
    folder = root / "dicom-images-train" / "study" / "series"
    folder.mkdir(parents=True)
    lines = ["ImageId, EncodedPixels"]
    scale = SIIM_SIZE // 64
    for i, case in enumerate(_cases(24, 64, prevalence=0.6)):
        image_id = f"1.2.276.0.7230010.3.1.4.{i}"
        pixels = np.kron(case.image, np.ones((scale, scale), np.uint8)).astype(np.uint16)
        _write_dicom(folder / f"{image_id}.dcm", pixels * 257)
        mask = case.masks.get("pneumothorax")
        big = None if mask is None else np.kron(mask, np.ones((scale, scale), bool))
        lines.append(f"{image_id}, {encode_rle(big) if big is not None else '-1'}")
    (root / "train-rle.csv").write_text("\n".join(lines) + "\n")
    return root


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"), dtype=np.float64)


def test_chestxdet10_classification_grounding_report_and_figures(
    ray_local, model_dir, chestxdet10, tmp_path
) -> None:
    config = EvaluateJobConfig(
        model=model_dir,
        benchmark="chestxdet10",
        root=str(chestxdet10),
        out=str(tmp_path / "eval"),
        batch_size=8,
        figure_examples=4,
    )
    result = evaluate(config)

    manifest = benchmarks.read("chestxdet10", str(chestxdet10))
    good = manifest[~manifest["image"].str.endswith("broken.png")]
    assert result["images"] == len(good) == 20
    assert [item["image"] for item in result["failed"]] == [
        str(chestxdet10 / "test_data/broken.png")
    ]
    assert "broken.png" in result["failed"][0]["error"]
    present = [c for c in benchmarks.ChestXDet10.pathologies if (good[c] == 1).any()]
    assert result["classes"] == present
    assert 0.0 <= result["auc"]["macro"] <= 1.0
    # One sample per (image, finding), hit when the peak is in any of its boxes.
    pairs = sum(len({box["finding"] for box in boxes}) for boxes in good["boxes"])
    assert result["pointing"]["samples"] == pairs

    # The same numbers in-process, as a notebook computes them from the manifest.
    model = RadZero.from_pretrained(model_dir)
    builder = scoring.TruthBuilder(size=64, template="There is {}")
    pixels = torch.stack([to_pixels(read_image(path), model.preprocess) for path in good["image"]])
    truths = [builder.build({"boxes": b}, (64, 64)) for b in good["boxes"]]
    records = pd.DataFrame(scoring.score_batch(model, pixels, truths, present, ["There is {}"]))
    local = scoring.summarise(pd.concat([good.reset_index(drop=True), records], axis=1), present)
    assert result["auc"]["macro"] == pytest.approx(local["auc"]["macro"], abs=1e-6)
    assert result["pointing"] == local["pointing"]  # hits are booleans: exactly equal

    out = tmp_path / "eval" / "chestxdet10"
    written = json.loads((out / "metrics.json").read_text())
    assert written["auc"]["macro"] == pytest.approx(result["auc"]["macro"])
    report = (out / "report.md").read_text()
    assert "RadZero (paper)" in report and "broken.png" in report
    # Figures at their drawn size (inches x 110 dpi): ROC 5.5 x 5; overlays 2.3 x 2.4 per
    # panel, 4 examples of an image column and one panel per box.
    boxes = [len({box["finding"] for box in b}) for b in good["boxes"] if len(b)]
    picks = np.linspace(0, len(boxes) - 1, 4).round().astype(int)
    columns = 1 + max(boxes[i] for i in picks)
    expected = {
        "roc.png": (550, 605),
        "overlays.png": (round(4 * 2.4 * 110), round(columns * 2.3 * 110)),
    }
    for name in ("roc.png", "overlays.png", "pointing.png"):
        assert f"figures/{name}" in report
        image = _png(out / "figures" / name)
        assert image.std() > 10, name  # drawn, not blank
        if name in expected:
            assert image.shape == expected[name], name


def test_siim_segmentation_with_a_held_out_threshold(ray_local, model_dir, siim, tmp_path) -> None:
    config = EvaluateJobConfig(
        model=model_dir, benchmark="siim", root=str(siim), out=str(tmp_path / "eval")
    )
    result = evaluate(config)

    seg = result["segmentation"]
    manifest = benchmarks.read("siim", str(siim))
    positives = int((manifest["Pneumothorax"] == 1).sum())
    finding = seg["per_class"]["Pneumothorax"]
    assert list(seg["per_class"]) == ["Pneumothorax"] and seg["dice"] == finding["dice"]
    assert 0 < finding["images"] < positives  # some positives were held out for the threshold
    assert finding["protocol"] == "validation" and finding["threshold"] in metrics.THRESHOLDS
    assert finding["test_sweep"]["protocol"] == metrics.TEST_SWEEP
    assert finding["test_sweep"]["dice"] >= finding["dice"] - 1e-12  # the sweep is optimistic
    assert 0.0 <= seg["dice"] <= 1.0 and 0.0 <= seg["pixel_auc"] <= 1.0
    assert seg["threshold_from"].startswith("held out")
    assert result["images"] + seg["threshold_images"] == len(manifest)
    assert (tmp_path / "eval" / "siim" / "figures" / "overlays.png").is_file()


def test_ground_truth_on_the_model_grid() -> None:
    """Boxes scale with the direct resize; RSNA's boxes become masks; MS-CXR queries phrases;
    SIIM's RLE is decoded at the file's size, then resized."""
    box = {"finding": "Mass", "x1": 100, "y1": 50, "x2": 199, "y2": 149, "phrase": "a mass"}
    plain = scoring.TruthBuilder(size=64, template="There is {}")
    truth = plain.build({"boxes": [box], "width": 400, "height": 200}, (1, 1))
    assert truth.boxes == [("Mass", "There is Mass", (16, 16, 31, 47))]
    assert plain.build({"boxes": [box]}, (200, 400)).boxes == truth.boxes  # size from pixels
    twice = plain.build({"boxes": [box, box | {"x1": 0, "x2": 9}]}, (200, 400))
    assert twice.targets() == {("Mass", "There is Mass"): [(16, 16, 31, 47), (0, 16, 1, 47)]}

    phrases = scoring.TruthBuilder(size=64, template="There is {}", phrases=True)
    assert phrases.build({"boxes": [box]}, (200, 400)).boxes[0][1] == "a mass"

    rsna = scoring.TruthBuilder(64, "There is {}", ("Pneumonia",), masks_from_boxes=True)
    boxed = rsna.build({"boxes": [box | {"finding": "Pneumonia"}]}, (200, 400))
    assert not boxed.boxes and rsna.queries == {"Pneumonia": "There is Pneumonia"}
    assert boxed.masks["Pneumonia"].sum() == 16 * 32
    assert boxed.masks["Pneumonia"][16:48, 16:32].all()

    mask = np.zeros((128, 128), bool)
    mask[32:64, 0:16] = True
    siim = scoring.TruthBuilder(64, "There is {}", ("Pneumothorax",))
    decoded = siim.build(
        {"boxes": [], "rle": [encode_rle(mask)], "height": 128, "width": 128}, (1, 1)
    )
    assert decoded.masks["Pneumothorax"].sum() == 16 * 8
    assert decoded.masks["Pneumothorax"][16:32, 0:8].all()


def test_pixel_auc_from_histograms_matches_the_exact_one_on_binned_maps() -> None:
    rng = np.random.default_rng(0)
    maps = [rng.random((32, 32)) for _ in range(3)]
    masks = [rng.random((32, 32)) < 0.2 for _ in range(3)]
    binned = [(np.floor(m * scoring.PIXEL_BINS) + 0.5) / scoring.PIXEL_BINS for m in maps]
    positive = sum(scoring._histogram(m[k]) for m, k in zip(maps, masks, strict=True))
    negative = sum(scoring._histogram(m[~k]) for m, k in zip(maps, masks, strict=True))
    exact = metrics.pixel_auc(binned, masks)["auc"]
    assert metrics.pixel_auc_from_histograms(positive, negative) == pytest.approx(exact, abs=1e-12)
    assert metrics.pixel_auc_from_histograms(positive, negative) == pytest.approx(
        metrics.pixel_auc(maps, masks)["auc"], abs=1e-3
    )


@pytest.mark.slow
def test_the_jobs_on_the_command_line_with_results_on_s3(
    ray_local, model_dir, chestxdet10, s3_bucket, tmp_path
) -> None:
    """jobs/evaluate.py joins the running Ray, writes to S3; jobs/results.py reads it back."""
    import ray

    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    out = f"s3://{s3_bucket}/eval"
    args = ["--model", model_dir, "--benchmark", "chestxdet10", "--root", str(chestxdet10)]
    run = subprocess.run(
        [sys.executable, "jobs/evaluate.py", *args, "--out", out, "--set", "batch_size=8"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "evaluate chestxdet10: AUC" in run.stdout
    assert storage.exists(f"{out}/chestxdet10/figures/overlays.png")

    table = tmp_path / "table.md"
    listed = subprocess.run(
        [sys.executable, "jobs/results.py", f"tiny={out}", "--out", str(table)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr[-2000:]
    rows = {line.split("|")[1].strip(): line for line in table.read_text().splitlines()[2:]}
    assert set(rows) == {"tiny", "RadZero (paper)", "RadZero (224px) (paper)", "CARZero (paper)"}
    assert "0.787 | 0.622" in rows["RadZero (paper)"]  # CXD10 AUC and pointing, as published

    missing = subprocess.run(
        [sys.executable, "jobs/evaluate.py", "--benchmark", "chestxdet10"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2 and "set model, root" in missing.stderr


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"benchmark": "imagenet"}, "not one of"),
        ({"templates": ["a chest with"]}, "'{}'"),
        ({"val_fraction": 1.5}, "val_fraction"),
        ({"split": "testing"}, r"split must be one of \('train', 'val', 'test'\)"),
        ({"source": "features"}, "needs features"),
    ],
)
def test_config_errors(changes, message) -> None:
    with pytest.raises(ValueError, match=message):
        from_dict(EvaluateJobConfig, {"benchmark": "siim", **changes})


def test_phantom_benchmark_from_the_feature_cache_matches_the_images(
    ray_local, model_dir, tmp_path
) -> None:
    """The demo's path: the phantom benchmark scored from cached tokens gives the numbers of
    scoring its images (the cache holds the same 64 px pixels, as float16 tokens)."""
    from radzero.platform.features import FeaturesJobConfig, compute_features
    from radzero.platform.preprocess import PreprocessJobConfig, preprocess

    root = tmp_path / "phantoms"
    phantom.write_dataset(root, 40, size=64, seed=3, prevalence=0.5, splits=(0.4, 0.3, 0.3))
    data = str(tmp_path / "data")
    preprocess(str(root), data, PreprocessJobConfig(resolutions=[64], batch_rows=16))
    cache = compute_features(
        data, data, FeaturesJobConfig(model="radzero-tiny", vision=TINY_CONFIG["vision"])
    )
    common = {"model": model_dir, "benchmark": "phantom", "root": str(root), "batch_size": 8}
    from_images = evaluate(EvaluateJobConfig(**common, out=str(tmp_path / "images")))
    # From the cache through the job's command line: --features switches the source.
    cached = storage.join(data, "features", cache["key"])
    args = ["--model", model_dir, "--benchmark", "phantom", "--root", str(root)]
    assert (
        cli.main(["evaluate", *args, "--out", str(tmp_path / "cache"), "--features", cached]) == 0
    )
    from_cache = json.loads((tmp_path / "cache" / "phantom" / "metrics.json").read_text())
    assert from_cache["source"] == "features" and from_cache["config"]["features"] == cached
    assert from_cache["images"] == from_images["images"] > 0 and not from_cache["failed"]
    assert from_cache["auc"]["macro"] == pytest.approx(from_images["auc"]["macro"], abs=0.02)
    seg = from_cache["segmentation"]
    assert seg["threshold_from"] == "the 'val' split" and seg["per_class"]
    assert from_cache["pointing"]["samples"] == from_images["pointing"]["samples"]
    assert 0 < from_cache["pointing"]["chance"] < 0.5
    report = (tmp_path / "cache" / "phantom" / "report.md").read_text()
    assert "figures/overlays.png" in report and "Segmentation" in report
    assert "(paper)" not in report  # the paper has no phantom column to compare with
    assert f"a random peak hits {from_cache['pointing']['chance']:.3f}" in report

    other = TINY_CONFIG | {"vision": TINY_CONFIG["vision"] | {"seed": 1}}
    mismatched = tmp_path / "other-model"
    RadZero(RadZeroConfig.from_dict(other)).save_pretrained(mismatched)
    with pytest.raises(ValueError, match=r"feature cache .* holds"):
        evaluate(
            EvaluateJobConfig(
                **(common | {"model": str(mismatched)}),
                source="features",
                features=storage.join(data, "features", cache["key"]),
            )
        )


def test_the_authors_converted_model_by_registry_reference_with_stretched_images(
    ray_local, chestxdet10, tmp_path
) -> None:
    """`radzero evaluate --model NAME@authors --set stretch=true`: the converted model from
    the registry, each image min-max stretched first, as the authors' benchmark loader did."""
    from radzero import registry
    from radzero.data.images import stretch_contrast
    from radzero.model.convert import convert_authors
    from tests.authors_checkpoint import write_authors_folder

    root = str(tmp_path / "registry")
    card = convert_authors(write_authors_folder(tmp_path / "authors"), tmp_path / "converted")
    registry.register(tmp_path / "converted", "radzero", card, root=root, aliases=("authors",))
    args = ["--model", "radzero@authors", "--registry", root, "--benchmark", "chestxdet10"]
    args += ["--root", str(chestxdet10), "--out", str(tmp_path / "eval")]
    assert cli.main(["evaluate", *args, "--set", "stretch=true", "figure_examples=0"]) == 0
    result = json.loads((tmp_path / "eval" / "chestxdet10" / "metrics.json").read_text())
    assert result["model"] == "radzero@authors"
    assert result["model_uri"] == registry.resolve("radzero@authors", root)

    model = RadZero.from_pretrained("radzero@authors", registry=root)
    good = benchmarks.read("chestxdet10", str(chestxdet10))
    good = good[~good["image"].str.endswith("broken.png")].reset_index(drop=True)
    classes = result["classes"]

    def auc(stretch) -> float:
        grays = [stretch(read_image(path)) for path in good["image"]]
        pixels = torch.stack([to_pixels(gray, model.preprocess) for gray in grays])
        builder = scoring.TruthBuilder(size=model.preprocess.image_size, template="There is {}")
        truths = [builder.build({"boxes": b}, (64, 64)) for b in good["boxes"]]
        records = scoring.score_batch(model, pixels, truths, classes, ["There is {}"])
        frame = pd.concat([good, pd.DataFrame(records)], axis=1)
        return scoring.summarise(frame, classes)["auc"]["macro"]

    assert result["auc"]["macro"] == pytest.approx(auc(stretch_contrast), abs=1e-6)
    assert result["auc"]["macro"] != pytest.approx(auc(lambda gray: gray), abs=1e-6)
