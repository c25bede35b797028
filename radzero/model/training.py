"""The plain-PyTorch training step (Ray Train's worker loop reuses it), its optimiser, and the
validation metrics and early stopping of the Ray loop (plain logic, no Ray)."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

import numpy as np
import torch
from torch import nn

from radzero.eval.metrics import auc_per_class
from radzero.model.distributed import average_gradients, gather_batch
from radzero.model.loss import mp_nce_loss
from radzero.model.radzero import RadZero

Precision = Literal["bf16", "fp32"]


@dataclass
class TrainConfig:
    """Optimisation settings; the defaults are the authors' (docs/method.md).

    ``precision``: "bf16" runs the Ray Train workers' steps under bfloat16 autocast on a GPU
    (a CPU worker stays in float32); "fp32" never autocasts (:func:`autocast_dtype`).
    """

    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-4
    text_lr: float | None = None  # None: the same as lr
    weight_decay: float = 0.05
    warmup_steps: int = 50
    grad_clip: float = 1.0
    multi_positive: bool = True
    mask_false_negatives: bool = False
    average_loss: bool = False
    precision: Precision = "bf16"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("config optim.epochs and optim.batch_size must be >= 1")
        rates = {"lr": self.lr, "text_lr": self.text_lr, "weight_decay": self.weight_decay}
        negative = [f"optim.{k} {v}" for k, v in rates.items() if v is not None and v < 0]
        if negative or self.warmup_steps < 0 or self.grad_clip <= 0:
            raise ValueError(
                f"config {', '.join(negative) or 'optim'}: lr, text_lr, weight_decay and "
                "warmup_steps must be >= 0 and grad_clip > 0"
            )
        if self.precision not in get_args(Precision):
            raise ValueError(
                f"config optim.precision must be one of {get_args(Precision)}, "
                f"got {self.precision!r}"
            )


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a training step on ``device``: bfloat16 for ``precision: bf16`` on
    a GPU, None (float32) otherwise."""
    return torch.bfloat16 if config.precision == "bf16" and device.type == "cuda" else None


@dataclass
class Batch:
    """Images (as pixels or cached backbone features) with their finding-sentences."""

    sentences: list[str]
    owner: torch.Tensor
    pixels: torch.Tensor | None = None
    features: torch.Tensor | None = None

    def __len__(self) -> int:
        """The number of images."""
        images = self.features if self.features is not None else self.pixels
        return 0 if images is None else images.shape[0]


def select_sentences(
    per_image: Sequence[Sequence[str]], multi_positive: bool, rng: random.Random
) -> tuple[list[str], torch.Tensor]:
    """Flatten sentences with their owner index; single-positive keeps one random per image."""
    sentences, owner = [], []
    for index, options in enumerate(per_image):
        if not options:
            raise ValueError(f"image {index} of the batch has no sentences")
        chosen = list(options) if multi_positive else [rng.choice(list(options))]
        sentences += chosen
        owner += [index] * len(chosen)
    return sentences, torch.tensor(owner, dtype=torch.long)


def sentence_ids(sentences: Sequence[str]) -> torch.Tensor:
    """(N,) ids that are equal exactly for identical sentence texts."""
    ids: dict[str, int] = {}
    return torch.tensor([ids.setdefault(s, len(ids)) for s in sentences], dtype=torch.long)


def batch_loss(
    model: RadZero, batch: Batch, config: TrainConfig, global_batch: bool = True
) -> torch.Tensor:
    """MP-NCE of one batch, with the loss options of ``config``.

    Under ``torch.distributed`` the batch is the global one: the encodings of every worker are
    gathered (with autograd) before VL-CABS, so each worker's loss sees all negatives.
    ``global_batch=False`` keeps to this worker's batch (validation on a worker's own data).
    """
    backbone = model.backbone_tokens(batch.pixels) if batch.features is None else batch.features
    tokens = model.image_tokens(backbone)
    text = model.encode_text(batch.sentences)
    owner = batch.owner.to(tokens.device)
    sentences = list(batch.sentences)
    if global_batch:
        tokens, text, owner, sentences = gather_batch(tokens, text, owner, sentences)
    logits, _ = model.score(tokens, text)
    ids = sentence_ids(sentences).to(logits.device) if config.mask_false_negatives else None
    return mp_nce_loss(logits, owner, sentence_ids=ids, average=config.average_loss)


def train_step(
    model: RadZero,
    batch: Batch,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    config: TrainConfig,
    autocast_dtype: torch.dtype | None = None,
) -> dict[str, float]:
    """One optimisation step: forward, MP-NCE, backward, clip, step. Returns scalar metrics."""
    model.train()
    use_autocast = autocast_dtype is not None
    with torch.autocast(_device_type(model), dtype=autocast_dtype, enabled=use_autocast):
        loss = batch_loss(model, batch, config)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    average_gradients(params)
    grad_norm = nn.utils.clip_grad_norm_(params, config.grad_clip) if config.grad_clip else None
    optimizer.step()
    lr = max(group["lr"] for group in optimizer.param_groups)  # the head's rate
    if scheduler is not None:
        scheduler.step()
    metrics = {"loss": float(loss.detach()), "lr": lr, "temperature": float(model.tau.detach())}
    if grad_norm is not None:
        metrics["grad_norm"] = float(grad_norm)
    return metrics


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW over trainable parameters; no weight decay on temperature, norms and biases.

    The pretrained text encoder gets ``text_lr`` when set (its projection keeps ``lr``).
    """
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = param.ndim <= 1 or name == "log_tau"
        is_text = name.startswith("text.encoder.") and config.text_lr is not None
        groups.setdefault((no_decay, is_text), []).append(param)
    return torch.optim.AdamW(
        [
            {
                "params": params,
                "weight_decay": 0.0 if no_decay else config.weight_decay,
                "lr": config.text_lr if is_text else config.lr,
            }
            for (no_decay, is_text), params in groups.items()
        ],
        lr=config.lr,
    )


def cosine_schedule(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to the base learning rate, then cosine decay to zero at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _device_type(model: nn.Module) -> str:
    return next(model.parameters()).device.type


def iterate_batches(
    features: torch.Tensor,
    sentences: Sequence[Sequence[str]],
    config: TrainConfig,
    rng: random.Random,
) -> Iterator[Batch]:
    """Shuffled batches of cached backbone features for one epoch (last partial batch kept)."""
    order = list(range(features.shape[0]))
    rng.shuffle(order)
    for start in range(0, len(order), config.batch_size):
        index = order[start : start + config.batch_size]
        if len(index) < 2:
            continue  # a contrastive batch needs negatives
        texts, owner = select_sentences([sentences[i] for i in index], config.multi_positive, rng)
        yield Batch(sentences=texts, owner=owner, features=features[index])


def fit(
    model: RadZero,
    features: torch.Tensor,
    sentences: Sequence[Sequence[str]],
    config: TrainConfig,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Train on cached backbone features with the plain loop; returns per-epoch metrics.

    ``on_step(epoch, metrics)`` is called after every step, ``on_epoch(epoch, record)`` after
    every epoch (epochs count from 1)."""
    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    if features.shape[0] < 2 or config.batch_size < 2:
        raise ValueError(
            f"contrastive training needs at least 2 images and batch_size >= 2, got "
            f"{features.shape[0]} images and batch_size {config.batch_size}"
        )
    steps_per_epoch = math.ceil(features.shape[0] / config.batch_size)
    optimizer = build_optimizer(model, config)
    scheduler = cosine_schedule(optimizer, config.warmup_steps, config.epochs * steps_per_epoch)
    history = []
    for epoch in range(config.epochs):
        started, losses = time.perf_counter(), []
        for batch in iterate_batches(features, sentences, config, rng):
            step = train_step(model, batch, optimizer, scheduler, config)
            losses.append(step["loss"])
            if on_step is not None:
                on_step(epoch + 1, step)
        seconds = time.perf_counter() - started
        record = {
            "epoch": epoch + 1,
            "loss": sum(losses) / max(1, len(losses)),
            "lr": step["lr"],
            "temperature": step["temperature"],
            "images_per_s": features.shape[0] / seconds,
            "steps_per_s": len(losses) / seconds,
        }
        history.append(record)
        if on_epoch is not None:
            on_epoch(epoch + 1, record)
    return history


def validation_metrics(
    losses: Sequence[float], scores: np.ndarray, labels: np.ndarray, classes: Sequence[str]
) -> dict[str, float]:
    """``val_loss``: the mean of the per-batch ``losses`` (NaN without any); ``val_auc``: the
    zero-shot macro AUC of the (N, C) ``scores`` over ``classes``.

    Labels are 1 positive, 0 negative, NaN unknown; -1 (uncertain, as in MIMIC-CXR's CheXpert
    labels) is unknown too. An unknown label leaves its row out of that class only, as in the
    evaluation job (:func:`radzero.eval.metrics.auc_per_class`).
    """
    known = np.asarray(labels, dtype=np.float64).copy()
    known[known == -1] = np.nan
    auc = auc_per_class(known, np.asarray(scores), classes)
    return {
        "val_loss": float(np.mean(losses)) if len(losses) else float("nan"),
        "val_auc": auc["macro"],
    }


@dataclass
class EarlyStopping:
    """Stop after ``patience`` epochs in a row without a better ``metric`` (never with
    ``patience=None``); ``mode`` says whether higher or lower is better.

    ``best`` and ``stale`` (epochs since the best) are its progress; :meth:`state` and
    :meth:`from_state` carry it through a checkpoint as JSON.
    """

    metric: str
    mode: Literal["max", "min"] = "max"
    patience: int | None = None
    best: float | None = None
    stale: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("max", "min"):
            raise ValueError(f"early stopping mode must be 'max' or 'min', got {self.mode!r}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"early stopping patience must be >= 1 or None, got {self.patience}")

    def update(self, score: float) -> bool:
        """Record one epoch's score; True when training should stop now. NaN never improves."""
        improved = not math.isnan(score) and (
            self.best is None or (score > self.best if self.mode == "max" else score < self.best)
        )
        if improved:
            self.best, self.stale = float(score), 0
        else:
            self.stale += 1
        return self.patience is not None and self.stale >= self.patience

    def state(self) -> dict[str, Any]:
        """Settings and progress as a JSON-able dict."""
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> EarlyStopping:
        """The early stopping that :meth:`state` saved."""
        return cls(**state)

    def resume(self, state: dict[str, Any]) -> None:
        """Carry on from a saved :meth:`state`: its best and stale count, these settings (so a
        resumed run may change ``patience``). ValueError when the saved one watched another
        metric or mode: its best would mean something else."""
        saved = EarlyStopping.from_state(state)
        if (saved.metric, saved.mode) != (self.metric, self.mode):
            raise ValueError(
                f"the checkpoint's early stopping watched {saved.metric!r} ({saved.mode}), "
                f"the config's watches {self.metric!r} ({self.mode}): keep checkpoint.metric "
                "and checkpoint.mode when resuming, or train under a new name"
            )
        self.best, self.stale = saved.best, saved.stale
