"""Ray Train: RadZero's trainable part on frozen-backbone tokens, with a global-batch MP-NCE.

A ``TorchTrainer`` runs :func:`train_loop` on every worker. Each worker streams its shard of the
training split (cached tokens from ``jobs/features.py``, or prepared images that it encodes with
the frozen backbone) through ``iter_torch_batches`` and calls the plain-PyTorch
:func:`radzero.model.training.train_step`, whose loss gathers every worker's encodings, so each
worker sees the negatives of all workers. After each epoch the workers score their shares of the
validation split (loss and zero-shot macro AUC) and gather the results, so every worker has the
same numbers and early stopping agrees without a message; then rank 0 reports a checkpoint
(trainable weights, optimizer, scheduler and step; see :mod:`radzero.model.checkpoint`). Ray
keeps the best ``checkpoint.keep``; the best is exported with ``save_pretrained`` to
``<storage_path>/<name>/model``. A worker failure restarts the group from the last checkpoint;
running the same ``name`` and ``storage_path`` again resumes a run whose driver died.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import ray
import ray.train
import torch
from ray.data.collate_fn import NumpyBatchCollateFn
from ray.data.expressions import col
from ray.train.torch import TorchTrainer

from radzero import storage
from radzero.config import from_dict, path_field, to_dict
from radzero.data.images import read_image, to_pixels
from radzero.eval.metrics import auc_per_class
from radzero.model import (
    RadZero,
    RadZeroConfig,
    check_model_reference,
    copy_pretrained,
    resolve_model_config,
)
from radzero.model.checkpoint import load_training_state, save_training_state
from radzero.model.distributed import broadcast_parameters, gather_objects
from radzero.model.training import (
    Batch,
    TrainConfig,
    batch_loss,
    build_optimizer,
    cosine_schedule,
    select_sentences,
    train_step,
)
from radzero.platform import outputs
from radzero.platform.features import cache_location, read_features
from radzero.platform.preprocess import read_prepared

log = logging.getLogger(__name__)

StepHook = Callable[[int, int], None]
_NOT_LABELS = frozenset({"row_id", "height", "width"})


@dataclass
class ScalingSection:
    """Ray Train's ScalingConfig: how many workers and what each one holds."""

    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0

    def __post_init__(self) -> None:
        if self.num_workers < 1 or self.cpus_per_worker <= 0:
            raise ValueError("config scaling.num_workers must be >= 1 and cpus_per_worker > 0")


@dataclass
class CheckpointSection:
    """Which checkpoints Ray keeps: the best ``keep`` by ``metric``."""

    keep: int = 2
    metric: str = "val_auc"
    mode: Literal["max", "min"] = "max"

    def __post_init__(self) -> None:
        if self.keep < 1:
            raise ValueError(f"config checkpoint.keep must be >= 1, got {self.keep}")


@dataclass
class TrainJobConfig:
    """What ``jobs/train.py`` trains, on which data, where it writes, and on how many workers.

    ``data`` is a finished preprocessing output; with ``source: features`` the tokens are read
    from where ``jobs/features.py`` cached them under ``features`` (default: ``data``).
    ``train.batch_size`` is the global batch, split evenly over the workers. ``classes`` are the
    label columns scored for the validation AUC (None: every label column of the data).
    ``patience`` stops training after that many epochs without a better ``checkpoint.metric``.
    Each epoch reads the training files in a new seeded order, and each worker mixes rows in a
    buffer of ``shuffle_buffer`` rows (its first batch waits for the buffer to fill).
    """

    name: str = "radzero"
    data: str = path_field("")
    features: str | None = path_field(None)
    source: Literal["features", "images"] = "features"
    model: str = "radzero-tiny-local"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    classes: list[str] | None = None
    patience: int | None = None
    storage_path: str = path_field("runs/train")
    scaling: ScalingSection = field(default_factory=ScalingSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    max_failures: int = 0
    shuffle_buffer: int = 128
    tensorboard: str | None = path_field(None)
    storage: storage.S3Options = field(default_factory=storage.S3Options)

    def __post_init__(self) -> None:
        if self.train.batch_size % self.scaling.num_workers:
            raise ValueError(
                f"config train.batch_size {self.train.batch_size} must divide evenly over "
                f"scaling.num_workers {self.scaling.num_workers}"
            )
        if self.train.batch_size // self.scaling.num_workers < 2:
            raise ValueError("config train.batch_size must give each worker at least 2 images")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"config patience must be >= 1 or null, got {self.patience}")
        if self.max_failures < -1:
            raise ValueError("config max_failures must be >= 0 (or -1: retry forever)")
        check_model_reference(self.model)

    def model_config(self) -> RadZeroConfig:
        return resolve_model_config(self.model, self.model_overrides)


def train(config: TrainJobConfig, on_step: StepHook | None = None) -> dict:
    """Run (or resume) the training run ``config.name`` and export its best model.

    ``on_step(step, rank)`` is called on every worker after each optimisation step.
    """
    if not config.data:
        raise ValueError("config data: the preprocessing output to train on is required")
    model_config = config.model_config()
    prepared = outputs.read_summary(config.data, "preprocess")
    resolution = int(model_config.vision.image_size or prepared["resolutions"][0])
    model_config.vision.image_size = resolution
    datasets, labels = _datasets(config, model_config, resolution)
    classes = config.classes or labels
    missing = sorted(set(classes) - set(labels))
    if missing or not classes:
        raise ValueError(
            f"config classes {missing or classes} are not label columns of the data {labels}"
        )
    rows = prepared["splits"]["train"] // config.scaling.num_workers * config.scaling.num_workers
    local_batch = config.train.batch_size // config.scaling.num_workers
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
            callbacks=[TensorBoardCallback(config.tensorboard)] if config.tensorboard else None,
        ),
        datasets=datasets,
        dataset_config=SplitConfig(),
    )
    log.info(
        "train %s: %d workers x %d images per step, %d steps per epoch, %d epochs, from %s",
        config.name,
        config.scaling.num_workers,
        local_batch,
        steps_per_epoch,
        config.train.epochs,
        config.source,
    )
    result = trainer.fit()
    best_checkpoint, best = _best(result, config.checkpoint)
    exported = storage.join(config.storage_path, config.name, "model")
    with best_checkpoint.as_directory() as folder:
        copy_pretrained(folder, exported)
    history = json.loads(storage.read_text(_history_uri(config)))
    summary = {
        "name": config.name,
        "model": exported,
        "best": best,
        "classes": classes,
        "epochs": history[-1]["epoch"],
        "steps": history[-1]["step"],
        "history": history,
    }
    storage.write_text(
        storage.join(config.storage_path, config.name, "summary.json"),
        json.dumps(summary, indent=2) + "\n",
    )
    log.info(
        "train %s: best %s %.4f at epoch %d -> %s",
        config.name,
        config.checkpoint.metric,
        best[config.checkpoint.metric],
        best["epoch"],
        exported,
    )
    return summary


def train_loop(loop_config: dict[str, Any]) -> None:
    """The per-worker loop: resume, then epochs of global-batch steps, validation and a report."""
    job = from_dict(TrainJobConfig, loop_config["job"])
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    torch.manual_seed(job.train.seed)
    model = RadZero(RadZeroConfig.from_dict(loop_config["model"])).to(device)
    broadcast_parameters(model)
    steps_per_epoch = loop_config["steps_per_epoch"]
    optimizer = build_optimizer(model, job.train)
    scheduler = cosine_schedule(
        optimizer, job.train.warmup_steps, job.train.epochs * steps_per_epoch
    )
    epoch, step, progress, history = 0, 0, {"best": None, "stale": 0}, []
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state = load_training_state(folder, model, optimizer, scheduler)
        epoch, step = state["epoch"], state["step"]
        progress = {k: state["metrics"][f"progress_{k}"] for k in ("best", "stale")}
        if rank == 0:
            log.info("train: resuming after epoch %d (step %d)", epoch, step)
            history = json.loads(storage.read_text(_history_uri(job)))
            history = [row for row in history if row["epoch"] <= epoch]

    autocast = torch.bfloat16 if device.type == "cuda" else None
    local_batch = job.train.batch_size // world
    collate = BatchCollate(job.source, model, job.train.multi_positive, job.train.seed + rank)
    train_shard = ray.train.get_dataset_shard("train")
    on_step: StepHook | None = loop_config["on_step"]
    while epoch < job.train.epochs:
        collate.rng.seed(job.train.seed * 1_000_003 + epoch * 1009 + rank)
        started, losses, images = time.perf_counter(), [], 0
        batches = train_shard.iter_torch_batches(
            batch_size=local_batch,
            collate_fn=collate,
            local_shuffle_buffer_size=max(job.shuffle_buffer, local_batch),
            local_shuffle_seed=job.train.seed + 1000 * epoch + rank,
        )
        for batch in batches:
            metrics = train_step(model, batch, optimizer, scheduler, job.train, autocast)
            losses.append(metrics["loss"])
            images += len(batch)
            step += 1
            if on_step is not None:
                on_step(step, rank)
        seconds = time.perf_counter() - started
        epoch += 1
        report = {
            "epoch": epoch,
            "step": step,
            "loss": float(np.mean(losses)) if losses else float("nan"),
            "lr": metrics["lr"],
            "temperature": metrics["temperature"],
            "images_per_s": images * world / seconds,
            "steps_per_s": len(losses) / seconds,
            **validate(model, ray.train.get_dataset_shard("val"), collate, job, loop_config),
        }
        if rank == 0:
            log.info(
                "train: epoch %d/%d, step %d: loss %.4f, val loss %.4f, val AUC %.3f, "
                "%.0f images/s",
                epoch,
                job.train.epochs,
                step,
                report["loss"],
                report["val_loss"],
                report["val_auc"],
                report["images_per_s"],
            )
        score, best = report[job.checkpoint.metric], progress["best"]
        if best is None or (score > best if job.checkpoint.mode == "max" else score < best):
            progress = {"best": score, "stale": 0}
        else:
            progress = {"best": best, "stale": progress["stale"] + 1}
        stop = job.patience is not None and progress["stale"] >= job.patience
        report |= {f"progress_{k}": v for k, v in progress.items()}
        with tempfile.TemporaryDirectory() as folder:
            saved = None
            if rank == 0:
                history.append(report)
                storage.write_text(_history_uri(job), json.dumps(history, indent=1) + "\n")
                save_training_state(folder, model, optimizer, scheduler, step, epoch, report)
                saved = ray.train.Checkpoint.from_directory(folder)
            ray.train.report(report, checkpoint=saved)
        if stop:
            if rank == 0:
                log.info(
                    "train: stopping early after epoch %d (no better %s for %d epochs)",
                    epoch,
                    job.checkpoint.metric,
                    job.patience,
                )
            break


@torch.no_grad()
def validate(
    model: RadZero,
    shard: ray.train.DataIterator,
    collate: BatchCollate,
    job: TrainJobConfig,
    loop_config: dict[str, Any],
) -> dict[str, float]:
    """Validation loss (MP-NCE over each batch, all sentences) and zero-shot macro AUC.

    Each worker scores its share of the validation split in batches of ``train.batch_size``;
    the results of all workers are gathered, so every worker returns the same numbers.
    """
    model.eval()
    classes: list[str] = loop_config["classes"]
    losses, scores, labels = [], [], []
    for rows in shard.iter_batches(batch_size=job.train.batch_size, batch_format="numpy"):
        batch = collate.make(rows, multi_positive=True)
        if len(rows["sentences"]) > 1:
            loss = batch_loss(model, batch, job.train, global_batch=False)
            losses.append(float(loss))
        probabilities = model.classify(classes, images=batch.pixels, features=batch.features)
        scores.append(probabilities.float().cpu().numpy())
        labels.append(np.stack([np.asarray(rows[c], dtype=np.float64) for c in classes], axis=1))
    gathered = gather_objects((losses, scores, labels))
    losses = [loss for part in gathered for loss in part[0]]
    scores = [batch for part in gathered for batch in part[1]]
    labels = [batch for part in gathered for batch in part[2]]
    auc = auc_per_class(_binary(np.concatenate(labels)), np.concatenate(scores), classes)
    return {"val_loss": float(np.mean(losses)), "val_auc": auc["macro"]}


def _binary(labels: np.ndarray) -> np.ndarray:
    """0/1 labels; uncertain or missing ones (-1, NaN) count as negatives for the AUC."""
    return (np.nan_to_num(labels, nan=0.0) == 1).astype(np.int64)


class BatchCollate(NumpyBatchCollateFn):
    """Rows of tokens (or prepared PNGs) and sentences -> a :class:`Batch` on the model's device."""

    def __init__(self, source: str, model: RadZero, multi_positive: bool, seed: int) -> None:
        super().__init__()
        self.source, self.model, self.multi_positive = source, model, multi_positive
        self.rng = random.Random(seed)
        self.device = next(model.parameters()).device

    def __call__(self, rows: dict[str, np.ndarray]) -> Batch:
        return self.make(rows, self.multi_positive)

    def make(self, rows: dict[str, np.ndarray], multi_positive: bool) -> Batch:
        per_image = [list(s) for s in rows["sentences"]]
        sentences, owner = select_sentences(per_image, multi_positive, self.rng)
        if self.source == "features":
            tokens = torch.as_tensor(np.asarray(rows["tokens"]), dtype=torch.float32)
            return Batch(sentences, owner, features=tokens.to(self.device))
        preprocess = self.model.preprocess
        pixels = torch.stack([to_pixels(read_image(png), preprocess) for png in rows["image"]])
        return Batch(sentences, owner, pixels=pixels.to(self.device))


class SplitConfig(ray.train.DataConfig):
    """Both splits are streamed in shares to the workers: the training rows evenly (``equal``:
    every worker has a batch at every step), the validation rows without dropping any, so each
    is scored once. Validation also runs through Ray Data's split coordinator, not in the worker
    process; the latter cost about a second more per epoch on a 2-core machine."""

    def configure(
        self,
        datasets: dict[str, ray.data.Dataset],
        world_size: int,
        worker_handles: Any,
        worker_node_ids: list[str] | None,
        **kwargs: Any,
    ) -> list[dict[str, ray.data.DataIterator]]:
        shares: list[dict[str, ray.data.DataIterator]] = [{} for _ in range(world_size)]
        for name, rows in datasets.items():
            rows = rows.copy(rows)  # leaves the caller's dataset and its context alone
            rows.set_name(name)
            rows.context.execution_options = self.default_ingest_options()
            split = rows.streaming_split(
                world_size, equal=name == "train", locality_hints=worker_node_ids
            )
            for share, iterator in zip(shares, split, strict=True):
                share[name] = iterator
        return shares


class TensorBoardCallback(ray.train.UserCallback):
    """Writes rank 0's metrics of every report as TensorBoard scalars (on the driver)."""

    def __init__(self, logdir: str) -> None:
        self.logdir = logdir
        self.writer = None

    def after_report(self, run_context: Any, metrics: list[dict], checkpoint: Any) -> None:
        from tensorboardX import SummaryWriter

        if self.writer is None:
            self.writer = SummaryWriter(self.logdir)
        values = metrics[0]
        for key, value in values.items():
            if isinstance(value, (int, float)) and key not in ("step", "epoch"):
                self.writer.add_scalar(f"train/{key}", value, global_step=int(values["step"]))
        self.writer.flush()


def _datasets(
    config: TrainJobConfig, model_config: RadZeroConfig, resolution: int
) -> tuple[dict[str, ray.data.Dataset], list[str]]:
    """The training split (files in a new seeded order each epoch), the validation split
    (files unshuffled) and the label columns."""
    if config.source == "features":
        features = config.features or config.data
        target = cache_location(config.data, features, model_config.vision, resolution)
        read = functools.partial(read_features, target)
    else:
        read = functools.partial(read_prepared, config.data, resolution)
    train = read(config.train.seed)
    schema = train.schema()
    numeric = [
        name
        for name, kind in zip(schema.names, schema.types, strict=True)
        if pa.types.is_integer(kind) or pa.types.is_floating(kind)
    ]
    keep = [c for c in schema.names if c not in ("report", "boxes", "masks", "source")]
    splits = {}
    for name, rows in (("train", train), ("val", read(None))):
        rows.context.enable_progress_bars = False  # each epoch logs one line instead
        splits[name] = rows.select_columns(keep).filter(expr=col("split") == name)
    return splits, [c for c in numeric if c not in _NOT_LABELS]


def _history_uri(config: TrainJobConfig) -> str:
    """Rank 0's report of every epoch so far, rewritten after each epoch."""
    return storage.join(config.storage_path, config.name, "history.json")


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
    if result.error is not None:
        raise RuntimeError(f"training failed: {result.error}") from result.error
    kept = [(c, m) for c, m in result.best_checkpoints if section.metric in m]
    if not kept:
        raise RuntimeError("training reported no checkpoint")
    pick = max if section.mode == "max" else min
    return pick(kept, key=lambda item: item[1][section.metric])
