"""The embedded-default demo: phantoms -> preprocess -> features -> Ray Train -> evaluation.

The platform's jobs end to end on a local Ray with a local folder as storage: Ray Data
preprocesses the phantoms and caches the frozen backbone's tokens, Ray Train trains with the
global-batch MP-NCE and exports the best epoch (by validation AUC), and the held-out test split
is scored from the cached tokens. Runs on a laptop CPU in minutes and writes ``metrics.json``,
a Markdown report with figures and the trained model under the output folder.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from radzero.config import deep_merge, from_dict, to_dict
from radzero.data import phantom
from radzero.data.images import read_image
from radzero.eval import figures, scoring
from radzero.eval.metrics import box_fraction
from radzero.model import RadZero
from radzero.model.training import TrainConfig
from radzero.platform.features import FeaturesJobConfig, compute_features, read_features
from radzero.platform.preprocess import PreprocessJobConfig, preprocess
from radzero.platform.session import connect
from radzero.platform.train import ScalingSection, TrainJobConfig, train


@dataclass
class DemoConfig:
    """What the demo generates and how it trains."""

    count: int = 3000
    size: int = 224
    seed: int = 0
    prevalence: float = 0.3
    model: str = "radzero-tiny-local"
    model_overrides: dict = field(default_factory=dict)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=10, batch_size=32, lr=1e-3, warmup_steps=20, mask_false_negatives=True
        )
    )
    figure_examples: int = 6
    workers: int = 2  # Ray Train workers; the global batch is train.batch_size


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def prepare_phantoms(out: Path, config: DemoConfig) -> Path:
    """Generate the phantom set once per (count, size, seed, prevalence, generator version)."""
    folder = out / "phantoms"
    stamp = folder / "generator.json"
    wanted = {k: getattr(config, k) for k in ("count", "size", "seed", "prevalence")}
    wanted["generator_version"] = phantom.GENERATOR_VERSION
    manifest = folder / "manifest.csv"
    if manifest.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == wanted:
        log(f"phantoms: reusing {manifest}")
        return manifest
    log(f"phantoms: generating {config.count} images at {config.size} px")
    manifest = phantom.write_dataset(
        folder, config.count, size=config.size, seed=config.seed, prevalence=config.prevalence
    )
    stamp.write_text(json.dumps(wanted))
    return manifest


def ground_truth(frame: pd.DataFrame, builder: scoring.TruthBuilder) -> list[scoring.Truth]:
    """For each image, its findings' boxes and masks on the model grid."""
    return [
        builder.build({"boxes": boxes, "masks": masks}, (builder.size, builder.size))
        for boxes, masks in zip(frame["boxes"], frame["masks"], strict=True)
    ]


def run_demo(out: str | Path, config: DemoConfig | None = None) -> dict:
    """Run the whole demo and return its metrics (also written to ``out/metrics.json``)."""
    config = config or DemoConfig()
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    phantoms = prepare_phantoms(out, config)
    connect()
    vision = config.model_overrides.get("vision", {})
    prepared = preprocess(
        str(phantoms.parent), str(out / "data"), PreprocessJobConfig(resolutions=[config.size])
    )
    log(f"preprocess: {prepared['rows_out']} images ({prepared['splits']})")
    cache = compute_features(
        str(out / "data"),
        str(out / "data"),
        FeaturesJobConfig(model=config.model, vision=vision, resolution=config.size),
    )
    log(f"features: {cache['images']} images as {cache['key']}")
    shutil.rmtree(out / "train", ignore_errors=True)  # a fresh run, not a resumed one
    job = TrainJobConfig(
        name="demo",
        data=str(out / "data"),
        model=config.model,
        model_overrides=deep_merge(config.model_overrides, {"vision": {"image_size": config.size}}),
        optim=config.train,
        classes=list(phantom.FINDINGS),
        scaling=ScalingSection(num_workers=config.workers, cpus_per_worker=0.5),
        storage_path=str(out / "train"),
    )
    trained = train(job)
    model = RadZero.from_pretrained(trained["model"])
    model.eval()
    best = trained["best"]
    log(f"keeping epoch {best['epoch']} (best validation AUC {best['val_auc']:.3f})")

    log("evaluating on the held-out test split from the cached tokens")
    rows = read_features(str(out / "data" / "features" / cache["key"])).to_pandas()
    splits = {
        name: _with_truth(rows[rows["split"] == name].sort_values("row_id"))
        for name in ("val", "test")
    }
    findings = list(phantom.FINDINGS)
    features = {name: _tokens(split) for name, split in splits.items()}
    labels = {name: split[findings].to_numpy(dtype=np.int64) for name, split in splits.items()}
    metrics = evaluate(model, features, labels, splits, findings, out, config, trained["history"])
    metrics["images"] = prepared["splits"]
    metrics["epoch_kept"] = best["epoch"]
    metrics["seconds"] = round(time.perf_counter() - started, 1)
    shutil.rmtree(out / "model", ignore_errors=True)
    shutil.copytree(trained["model"], out / "model")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    write_report(out, metrics)
    log(
        f"AUC {metrics['auc_macro']:.3f}, pointing game {metrics['pointing_game']:.3f}, "
        f"Dice {metrics['dice']:.3f}; report: {out / 'report.md'}"
    )
    return metrics


def _with_truth(frame: pd.DataFrame) -> pd.DataFrame:
    """Cached rows with their boxes and masks parsed and the image path under ``image``."""
    frame = frame.reset_index(drop=True).copy()
    frame["boxes"] = [json.loads(b) for b in frame["boxes"]]
    frame["masks"] = [json.loads(m) for m in frame["masks"]]
    frame["image"] = frame["source"]
    return frame


def _tokens(frame: pd.DataFrame) -> torch.Tensor:
    return torch.from_numpy(np.stack(list(frame["tokens"])).astype(np.float32))


def evaluate(
    model: RadZero,
    features: dict[str, torch.Tensor],
    labels: dict[str, np.ndarray],
    splits: dict[str, pd.DataFrame],
    findings: list[str],
    out: Path,
    config: DemoConfig,
    history: list[dict[str, float]],
) -> dict:
    """Test-split AUC, pointing game and Dice (thresholds from the validation split) + figures,
    with the benchmarks' scoring (:mod:`radzero.eval.scoring`) on the cached tokens."""
    builder = scoring.TruthBuilder(config.size, "There is {}", segment=tuple(findings))
    truth = {name: ground_truth(splits[name], builder) for name in ("val", "test")}
    records = {}
    for name in ("val", "test"):
        scored = []
        for start in range(0, len(truth[name]), 64):
            scored += scoring.score_batch(
                model,
                None,
                truth[name][start : start + 64],
                findings,
                ["There is {}"],
                builder.queries,
                features=features[name][start : start + 64],
            )
        records[name] = pd.concat([splits[name], pd.DataFrame(scored)], axis=1)
    result = scoring.summarise(records["test"], findings, threshold_records=records["val"])
    auc, pointing, seg = result["auc"], result["pointing"], result["segmentation"]
    scores = np.stack(records["test"]["probabilities"].to_list())
    chance = [
        box_fraction([cells], (config.size, config.size))
        for item in truth["test"]
        for _, _, cells in item.boxes
    ]
    figures.roc_figure(labels["test"], scores, findings, out / "roc.png")
    figures.history_figure(history, out / "training.png")
    overlay_examples(
        model, splits["test"], features["test"], scores, findings, config, out / "maps.png"
    )
    return {
        "auc_macro": auc["macro"],
        "pointing_game": pointing["mean_over_classes"],
        "dice": seg["dice"],
        "auc_per_class": auc["per_class"],
        "pointing_game_pooled": pointing["accuracy"],
        "pointing_game_chance": float(np.mean(chance)),
        "pointing_game_per_class": pointing["per_class"],
        "dice_per_class": {f: entry["dice"] for f, entry in seg["per_class"].items()},
        "dice_thresholds_from_val": {
            f: entry["threshold"] for f, entry in seg["per_class"].items()
        },
        "pixel_auc": seg["pixel_auc"],
        "history": history,
        "config": {"demo": to_dict(config), "model": model.config.to_dict()},
    }


def overlay_examples(
    model: RadZero,
    frame: pd.DataFrame,
    features: torch.Tensor,
    scores: np.ndarray,
    findings: list[str],
    config: DemoConfig,
    path: Path,
) -> None:
    """Overlays for test images with findings: each present finding, plus one absent one."""
    rows = [i for i, boxes in enumerate(frame["boxes"]) if boxes][: config.figure_examples]
    images, panels = [], []
    for i in rows:
        boxes: dict[str, list] = {}
        for box in frame["boxes"].iloc[i]:
            boxes.setdefault(box["finding"], []).append(
                (box["x1"], box["y1"], box["x2"], box["y2"])
            )
        present = list(boxes)
        absent = [f for f in findings if f not in boxes][:1]
        phrases = present + absent
        maps = model.similarity_maps(
            None,
            [f"There is {f}" for f in phrases],
            features=features[i : i + 1],
            size=(config.size, config.size),
        )[0].numpy()
        images.append(read_image(frame["image"].iloc[i]))
        panels.append(
            [
                figures.Panel(
                    phrase=f,
                    heatmap=maps[k],
                    boxes=boxes.get(f, ()),
                    probability=float(scores[i, findings.index(f)]),
                )
                for k, f in enumerate(phrases)
            ]
        )
    figures.overlay_figure(images, panels, path)


def write_report(out: Path, metrics: dict) -> Path:
    """A short Markdown report next to the figures."""
    lines = [
        "# RadZero demo on phantom chest X-rays",
        "",
        "Images: "
        + ", ".join(f"{n:,} {name}" for name, n in metrics["images"].items())
        + f". Run time: {metrics['seconds']} s. "
        f"Weights evaluated: epoch {metrics['epoch_kept']} (best validation AUC).",
        "",
        "| metric | value |",
        "| --- | --- |",
        f"| zero-shot AUC (macro) | {metrics['auc_macro']:.3f} |",
        f"| pointing game (mean over findings) | {metrics['pointing_game']:.3f} |",
        f"| pointing game (all pairs; chance {metrics['pointing_game_chance']:.3f}) "
        f"| {metrics['pointing_game_pooled']:.3f} |",
        f"| Dice (threshold chosen on val) | {metrics['dice']:.3f} |",
        "",
        "| finding | AUC | pointing game | Dice |",
        "| --- | --- | --- | --- |",
    ]
    for finding, auc in metrics["auc_per_class"].items():
        point = metrics["pointing_game_per_class"].get(finding, float("nan"))
        dice = metrics["dice_per_class"].get(finding, float("nan"))
        lines.append(f"| {finding} | {auc:.3f} | {point:.3f} | {dice:.3f} |")
    lines += [
        "",
        "## Similarity maps",
        'Each row: a held-out image, then the map of "There is {finding}" for each finding it '
        "has and for one it does not (title: zero-shot probability). Green: ground-truth box; "
        "white cross: the map's peak (pointing game).",
        "",
        "![similarity maps](maps.png)",
        "",
        "## ROC curves",
        "![ROC](roc.png)",
        "",
        "## Training",
        "![training](training.png)",
        "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def demo_config(overrides: dict | None = None) -> DemoConfig:
    """The default DemoConfig with nested overrides applied; unknown keys are rejected."""
    return from_dict(DemoConfig, deep_merge(asdict(DemoConfig()), overrides or {}))


__all__ = ["DemoConfig", "demo_config", "run_demo"]
