"""The loop every Ray Train worker runs: resume, epochs of global-batch steps, validation, a
report with a checkpoint, and early stopping."""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import ray
import ray.train
import torch

from radzero import storage
from radzero.config import from_dict
from radzero.model import RadZero, RadZeroConfig
from radzero.model.checkpoint import load_training_state, save_training_state
from radzero.model.distributed import broadcast_parameters, gather_objects
from radzero.model.training import (
    EarlyStopping,
    autocast_dtype,
    batch_loss,
    build_optimizer,
    cosine_schedule,
    train_step,
    validation_metrics,
)
from radzero.platform.train.config import TrainJobConfig
from radzero.platform.train.data import BatchCollate
from radzero.platform.train.report import EpochReport

log = logging.getLogger(__name__)

StepHook = Callable[[int, int], None]
# Next to radzero.model.checkpoint's files in every checkpoint folder: EarlyStopping.state().
EARLY_STOPPING_NAME = "early_stopping.json"


def train_loop(loop_config: dict[str, Any]) -> None:
    """The per-worker loop: resume, then epochs of global-batch steps, validation and a report.

    ``loop_config`` holds the job (``to_dict`` of a :class:`TrainJobConfig`), the model config,
    the validation ``classes``, ``steps_per_epoch`` and the ``on_step`` hook (or None).
    """
    job = from_dict(TrainJobConfig, loop_config["job"])
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    torch.manual_seed(job.optim.seed)
    model = RadZero(RadZeroConfig.from_dict(loop_config["model"])).to(device)
    broadcast_parameters(model)
    steps_per_epoch = loop_config["steps_per_epoch"]
    optimizer = build_optimizer(model, job.optim)
    scheduler = cosine_schedule(
        optimizer, job.optim.warmup_steps, job.optim.epochs * steps_per_epoch
    )
    stopping = EarlyStopping(job.checkpoint.metric, job.checkpoint.mode, job.patience)
    epoch, step, history = 0, 0, []
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state = load_training_state(folder, model, optimizer, scheduler)
            stopping_state = json.loads((Path(folder) / EARLY_STOPPING_NAME).read_text())
        epoch, step = state["epoch"], state["step"]
        stopping.resume(stopping_state)
        if rank == 0:
            log.info("train: resuming after epoch %d (step %d)", epoch, step)
            history = json.loads(storage.read_text(history_uri(job)))
            history = [row for row in history if row["epoch"] <= epoch]

    autocast = autocast_dtype(job.optim, device)
    local_batch = job.optim.batch_size // world
    collate = BatchCollate(job.source, model, job.optim.multi_positive, job.optim.seed + rank)
    train_shard = ray.train.get_dataset_shard("train")
    on_step: StepHook | None = loop_config["on_step"]
    while epoch < job.optim.epochs:
        collate.rng.seed(job.optim.seed * 1_000_003 + epoch * 1009 + rank)
        started, losses, images = time.perf_counter(), [], 0
        batches = train_shard.iter_torch_batches(
            batch_size=local_batch,
            collate_fn=collate,
            local_shuffle_buffer_size=max(job.shuffle_buffer, local_batch),
            local_shuffle_seed=job.optim.seed + 1000 * epoch + rank,
        )
        for batch in batches:
            metrics = train_step(model, batch, optimizer, scheduler, job.optim, autocast)
            losses.append(metrics["loss"])
            images += len(batch)
            step += 1
            if on_step is not None:
                on_step(step, rank)
        seconds = time.perf_counter() - started
        epoch += 1
        report = EpochReport(
            epoch=epoch,
            step=step,
            loss=float(np.mean(losses)) if losses else float("nan"),
            lr=metrics["lr"],
            temperature=metrics["temperature"],
            images_per_s=images * world / seconds,
            steps_per_s=len(losses) / seconds,
            **validate(
                model, ray.train.get_dataset_shard("val"), collate, job, loop_config["classes"]
            ),
        )
        if rank == 0:
            log.info(
                "train: epoch %d/%d, step %d: loss %.4f, val loss %.4f, val AUC %.3f, "
                "%.0f images/s",
                epoch,
                job.optim.epochs,
                step,
                report.loss,
                report.val_loss,
                report.val_auc,
                report.images_per_s,
            )
        values = report.to_dict()
        stop = stopping.update(values[stopping.metric])
        with tempfile.TemporaryDirectory() as folder:
            saved = None
            if rank == 0:
                history.append(values)
                storage.write_text(history_uri(job), json.dumps(history, indent=1) + "\n")
                (Path(folder) / EARLY_STOPPING_NAME).write_text(json.dumps(stopping.state()))
                save_training_state(folder, model, optimizer, scheduler, step, epoch, values)
                saved = ray.train.Checkpoint.from_directory(folder)
            ray.train.report(values, checkpoint=saved)
        if stop:
            if rank == 0:
                log.info(
                    "train: stopping early after epoch %d (no better %s for %d epochs)",
                    epoch,
                    stopping.metric,
                    stopping.patience,
                )
            break


@torch.no_grad()
def validate(
    model: RadZero,
    shard: ray.train.DataIterator,
    collate: BatchCollate,
    job: TrainJobConfig,
    classes: list[str],
) -> dict[str, float]:
    """Validation loss (MP-NCE over each batch, all sentences) and zero-shot macro AUC over
    ``classes`` (:func:`radzero.model.training.validation_metrics`).

    Each worker scores its share of the validation split in batches of ``optim.batch_size``;
    the results of all workers are gathered, so every worker returns the same numbers.
    """
    model.eval()
    losses, scores, labels = [], [], []
    for rows in shard.iter_batches(batch_size=job.optim.batch_size, batch_format="numpy"):
        batch = collate.make(rows, multi_positive=True)
        if len(rows["sentences"]) > 1:
            loss = batch_loss(model, batch, job.optim, global_batch=False)
            losses.append(float(loss))
        probabilities = model.classify(classes, images=batch.pixels, features=batch.features)
        scores.append(probabilities.float().cpu().numpy())
        labels.append(np.stack([np.asarray(rows[c], dtype=np.float64) for c in classes], axis=1))
    gathered = gather_objects((losses, scores, labels))
    return validation_metrics(
        [loss for part in gathered for loss in part[0]],
        np.concatenate([batch for part in gathered for batch in part[1]]),
        np.concatenate([batch for part in gathered for batch in part[2]]),
        classes,
    )


def history_uri(config: TrainJobConfig) -> str:
    """Rank 0's report of every epoch so far, rewritten after each epoch."""
    return storage.join(config.storage_path, config.name, "history.json")
