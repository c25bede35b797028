"""The embedded-default demo: phantoms -> preprocess -> features -> Ray Train -> evaluation.

The platform's jobs end to end on a local Ray with a local folder as storage: Ray Data
preprocesses the phantoms and caches the frozen backbone's tokens, Ray Train trains with the
global-batch MP-NCE and exports the best epoch (by validation AUC), and the evaluation job
scores the held-out test split of the phantom benchmark from the cached tokens. Runs on a
laptop CPU in minutes and writes ``phantom/metrics.json``, ``phantom/report.md`` with figures
and the trained model (``model/``) under ``out``.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radzero import storage
from radzero.config import deep_merge, from_dict, path_field, to_dict
from radzero.data import phantom
from radzero.model import copy_pretrained, resolve_model_config
from radzero.model.training import TrainConfig
from radzero.platform.evaluate import EvaluateJobConfig, evaluate
from radzero.platform.features import FeaturesJobConfig, compute_features
from radzero.platform.preprocess import PreprocessJobConfig, preprocess
from radzero.platform.session import connect
from radzero.platform.train import ScalingSection, TrainJobConfig, train

log = logging.getLogger(__name__)


@dataclass
class DemoConfig:
    """What the demo generates, how it trains and where it writes (``out``)."""

    out: str = path_field("runs/demo")
    count: int = 3000
    size: int = 224
    seed: int = 0
    prevalence: float = 0.3
    model: str = "radzero-tiny-local"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    optim: TrainConfig = field(
        default_factory=lambda: TrainConfig(
            epochs=10, batch_size=32, lr=1e-3, warmup_steps=20, mask_false_negatives=True
        )
    )
    figure_examples: int = 6
    workers: int = 2  # Ray Train workers; the global batch is optim.batch_size
    storage: storage.S3Options = field(default_factory=storage.S3Options)


def prepare_phantoms(out: Path, config: DemoConfig) -> Path:
    """The phantom folder, generated once per (count, size, seed, prevalence, generator)."""
    folder = out / "phantoms"
    stamp = folder / "generator.json"
    wanted = {k: getattr(config, k) for k in ("count", "size", "seed", "prevalence")}
    wanted["generator_version"] = phantom.GENERATOR_VERSION
    manifest = folder / "manifest.csv"
    if manifest.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == wanted:
        log.info("phantoms: reusing %s", folder)
        return folder
    log.info("phantoms: generating %d images at %d px", config.count, config.size)
    phantom.write_dataset(
        folder, config.count, size=config.size, seed=config.seed, prevalence=config.prevalence
    )
    stamp.write_text(json.dumps(wanted))
    return folder


def run_demo(config: DemoConfig | None = None) -> dict:
    """Run the whole demo and return the evaluation's metrics (``out/phantom/metrics.json``)."""
    config = config or DemoConfig()
    out = Path(config.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    overrides = deep_merge(config.model_overrides, {"vision": {"image_size": config.size}})
    resolve_model_config(config.model, overrides)  # a bad name or override fails before any work
    phantoms = prepare_phantoms(out, config)
    connect()
    data = str(out / "data")
    prepared = preprocess(str(phantoms), data, PreprocessJobConfig(resolutions=[config.size]))
    log.info("preprocess: %d images (%s)", prepared["rows_out"], prepared["splits"])
    cache = compute_features(
        data, data, FeaturesJobConfig(model=config.model, vision=overrides["vision"])
    )
    log.info("features: %d images as %s", cache["images"], cache["key"])
    shutil.rmtree(out / "train", ignore_errors=True)  # a fresh run, not a resumed one
    trained = train(
        TrainJobConfig(
            name="demo",
            data=data,
            model=config.model,
            model_overrides=overrides,
            optim=config.optim,
            classes=list(phantom.FINDINGS),
            scaling=ScalingSection(num_workers=config.workers, cpus_per_worker=0.5),
            storage_path=str(out / "train"),
        )
    )
    best = trained["best"]
    log.info("keeping epoch %d (best validation AUC %.3f)", best["epoch"], best["val_auc"])
    model = copy_pretrained(trained["model"], out / "model")
    metrics = evaluate(
        EvaluateJobConfig(
            model=model,
            benchmark="phantom",
            root=str(phantoms),
            out=str(out),
            source="features",
            features=storage.join(data, "features", cache["key"]),
            figure_examples=config.figure_examples,
        ),
        training=trained,
    )
    log.info(
        "demo: %s in %.0f s; report: %s",
        headline(metrics),
        time.perf_counter() - started,
        out / "phantom" / "report.md",
    )
    return metrics


def headline(metrics: dict) -> dict[str, float]:
    """The demo's three numbers: macro AUC, pointing game (mean over findings), Dice."""
    return {
        "auc": metrics["auc"]["macro"],
        "pointing_game": metrics["pointing"]["mean_over_classes"],
        "dice": metrics["segmentation"]["dice"],
    }


def demo_config(overrides: dict | None = None) -> DemoConfig:
    """The default DemoConfig with nested overrides applied; unknown keys are rejected."""
    return from_dict(DemoConfig, deep_merge(to_dict(DemoConfig()), overrides or {}))


__all__ = ["DemoConfig", "demo_config", "headline", "run_demo"]
