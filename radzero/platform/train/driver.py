"""The driver of a training run: checks the data, sets up the ``TorchTrainer``, waits for it,
exports the best checkpoint's model and writes the run's ``summary.json``."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import pyarrow.fs as pafs
import ray
import ray.train
from ray.train.torch import TorchTrainer

from radzero import registry, storage
from radzero.config import to_dict
from radzero.model import copy_pretrained
from radzero.platform import outputs
from radzero.platform.lineage import model_card
from radzero.platform.train.callbacks import TensorBoardCallback
from radzero.platform.train.config import CheckpointSection, TrainJobConfig
from radzero.platform.train.data import TrainValIngest, datasets
from radzero.platform.train.worker import StepHook, history_uri, train_loop

log = logging.getLogger(__name__)


def train(
    config: TrainJobConfig,
    on_step: StepHook | None = None,
    callbacks: Sequence[ray.train.UserCallback] = (),
) -> dict:
    """Run (or resume) the training run ``config.name`` and export its best model.

    ``on_step(step, rank)`` is called on every worker after each optimisation step;
    ``callbacks`` go to Ray Train's RunConfig beside TensorBoard's (a sweep's Tune report).
    """
    if not config.data:
        raise ValueError("config data: the preprocessing output to train on is required")
    model_config = config.model_config()
    prepared = outputs.read_summary(config.data, "preprocess")
    resolution = int(model_config.vision.image_size or prepared["resolutions"][0])
    model_config.vision.image_size = resolution
    splits, labels = datasets(config, model_config, resolution)
    classes = config.classes or labels
    missing = sorted(set(classes) - set(labels))
    if missing or not classes:
        raise ValueError(
            f"config classes {missing or classes} are not label columns of the data {labels}"
        )
    rows = prepared["splits"]["train"] // config.scaling.num_workers * config.scaling.num_workers
    local_batch = config.optim.batch_size // config.scaling.num_workers
    steps_per_epoch = math.ceil(rows / config.scaling.num_workers / local_batch)
    if steps_per_epoch < 1:
        raise ValueError(f"{config.data} has no training rows to train on")
    if not prepared["splits"].get("val"):
        raise ValueError(f"{config.data} has no validation rows (split 'val') to validate on")

    storage_fs, storage_path = _storage(config.storage_path)
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={
            "job": to_dict(config),
            "model": model_config.to_dict(),
            "classes": classes,
            "steps_per_epoch": steps_per_epoch,
            "on_step": on_step,
        },
        scaling_config=ray.train.ScalingConfig(
            num_workers=config.scaling.num_workers,
            use_gpu=config.scaling.use_gpu,
            resources_per_worker={"CPU": config.scaling.cpus_per_worker}
            | ({"GPU": 1} if config.scaling.use_gpu else {}),
        ),
        run_config=ray.train.RunConfig(
            name=config.name,
            storage_path=storage_path,
            storage_filesystem=storage_fs,
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=config.checkpoint.keep,
                checkpoint_score_attribute=config.checkpoint.metric,
                checkpoint_score_order=config.checkpoint.mode,
            ),
            failure_config=ray.train.FailureConfig(max_failures=config.max_failures),
            callbacks=[
                *([TensorBoardCallback(config.tensorboard)] if config.tensorboard else []),
                *callbacks,
            ],
        ),
        datasets=splits,
        dataset_config=TrainValIngest(),
    )
    log.info(
        "train %s: %d workers x %d images per step, %d steps per epoch, %d epochs, from %s",
        config.name,
        config.scaling.num_workers,
        local_batch,
        steps_per_epoch,
        config.optim.epochs,
        config.source,
    )
    exported, best = export_best(config, trainer.fit())
    history = json.loads(storage.read_text(history_uri(config)))
    summary = {
        "name": config.name,
        "model": exported,
        "best": best,
        "classes": classes,
        "epochs": history[-1]["epoch"],
        "steps": history[-1]["step"],
        "history": history,
    }
    summary_uri = storage.join(config.storage_path, config.name, "summary.json")
    if config.register:
        summary["registered"] = _register(config, exported, best, summary_uri)
    storage.write_text(summary_uri, json.dumps(summary, indent=2) + "\n")
    log.info(
        "train %s: best %s %.4f at epoch %d -> %s",
        config.name,
        config.checkpoint.metric,
        best[config.checkpoint.metric],
        best["epoch"],
        exported,
    )
    return summary


def _register(config: TrainJobConfig, model: str, best: dict, summary_uri: str) -> dict:
    """Register the exported model with its card, once: a rerun of a finished run whose best
    epoch is unchanged keeps the version it registered."""
    if storage.exists(summary_uri):
        before = json.loads(storage.read_text(summary_uri))
        kept = before.get("registered")
        if kept and kept["name"] == config.register and before["best"] == best:
            return kept
    card = model_card(config, model, validation=best)
    version = registry.register(model, config.register, card, root=config.registry)
    uri = registry.resolve(f"{config.register}@{version}", root=config.registry)
    log.info("train %s: registered as %s@%d (%s)", config.name, config.register, version, uri)
    return {"name": config.register, "version": version, "uri": uri}


def export_best(config: TrainJobConfig, result: ray.train.Result | None = None) -> tuple[str, dict]:
    """Export the best kept checkpoint of the run ``config.name`` (``result``, or read back from
    its folder, e.g. for a run that was stopped) to ``<storage_path>/<name>/model``; return the
    model's URI and the checkpoint's metrics."""
    if result is None:
        fs, path = _storage(config.storage_path)
        result = ray.train.Result.from_path(f"{path}/{config.name}", storage_filesystem=fs)
    best_checkpoint, best = _best(result, config.checkpoint)
    exported = storage.join(config.storage_path, config.name, "model")
    with best_checkpoint.as_directory() as folder:
        copy_pretrained(folder, exported)
    return exported, best


def _storage(uri: str) -> tuple[pafs.FileSystem | None, str]:
    """Ray Train's storage_path and filesystem for a local folder or an ``s3://`` URI."""
    if storage.is_s3(uri):
        fs, path = storage.resolve(uri)
        return fs, path
    Path(uri).mkdir(parents=True, exist_ok=True)
    return None, str(Path(uri).resolve())


def _best(
    result: ray.train.Result, section: CheckpointSection
) -> tuple[ray.train.Checkpoint, dict]:
    """The kept checkpoint with the best ``section.metric`` and its metrics."""
    if result.error is not None:
        raise RuntimeError(f"training failed: {result.error}") from result.error
    kept = [(c, m) for c, m in result.best_checkpoints if section.metric in m]
    if not kept:
        raise RuntimeError("training reported no checkpoint")
    pick = max if section.mode == "max" else min
    return pick(kept, key=lambda item: item[1][section.metric])
