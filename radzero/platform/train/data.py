"""The training job's data: both splits as Ray Datasets, their ingest into the workers, and the
collate step that turns rows into a :class:`~radzero.model.training.Batch`."""

from __future__ import annotations

import functools
import random
from typing import Any

import numpy as np
import pyarrow as pa
import ray
import ray.train
import torch
from ray.data.collate_fn import NumpyBatchCollateFn
from ray.data.expressions import col

from radzero.data.images import read_image, to_pixels
from radzero.model import RadZero, RadZeroConfig
from radzero.model.training import Batch, select_sentences
from radzero.platform.features import cache_location, read_features
from radzero.platform.preprocess import read_prepared
from radzero.platform.train.config import TrainJobConfig

_NOT_LABELS = frozenset({"row_id", "height", "width"})


def datasets(
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
    train = read(config.optim.seed)
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


class TrainValIngest(ray.train.DataConfig):
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
        """The batch of ``rows``, with every sentence (``multi_positive``) or one per image."""
        per_image = [list(s) for s in rows["sentences"]]
        sentences, owner = select_sentences(per_image, multi_positive, self.rng)
        if self.source == "features":
            tokens = torch.as_tensor(np.asarray(rows["tokens"]), dtype=torch.float32)
            return Batch(sentences, owner, features=tokens.to(self.device))
        preprocess = self.model.preprocess
        pixels = torch.stack([to_pixels(read_image(png), preprocess) for png in rows["image"]])
        return Batch(sentences, owner, pixels=pixels.to(self.device))
