"""The training job's config: what to train, on which data, where to write, on how many workers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from radzero import storage
from radzero.config import path_field
from radzero.model import RadZeroConfig, check_model_reference, resolve_model_config
from radzero.model.training import TrainConfig
from radzero.platform.train.report import REPORT_METRICS


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
    """Which checkpoints Ray keeps: the best ``keep`` by ``metric``, a field of the epoch
    report (:class:`~radzero.platform.train.report.EpochReport`); early stopping watches it
    too."""

    keep: int = 2
    metric: str = "val_auc"
    mode: Literal["max", "min"] = "max"

    def __post_init__(self) -> None:
        if self.keep < 1:
            raise ValueError(f"config checkpoint.keep must be >= 1, got {self.keep}")
        if self.metric not in REPORT_METRICS:
            raise ValueError(
                f"config checkpoint.metric {self.metric!r} is not reported by an epoch; "
                f"allowed: {', '.join(REPORT_METRICS)}"
            )


@dataclass
class TrainJobConfig:
    """What ``jobs/train.py`` trains, on which data, where it writes, and on how many workers.

    ``data`` is a finished preprocessing output; with ``source: features`` the tokens are read
    from where ``jobs/features.py`` cached them under ``features`` (default: ``data``).
    ``optim`` holds the optimisation settings; ``optim.batch_size`` is the global batch, split
    evenly over the workers. ``classes`` are the label columns scored for the validation AUC
    (None: every label column of the data). ``patience`` stops training after that many epochs
    without a better ``checkpoint.metric``. ``register`` names the exported model in the model
    registry (:mod:`radzero.registry`) at ``registry``, with its card. Each epoch reads the
    training files in a new seeded order, and each worker mixes rows in a buffer of
    ``shuffle_buffer`` rows (its first batch waits for the buffer to fill).
    """

    name: str = "radzero"
    data: str = path_field("")
    features: str | None = path_field(None)
    source: Literal["features", "images"] = "features"
    model: str = "radzero-tiny-local"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    optim: TrainConfig = field(default_factory=TrainConfig)
    classes: list[str] | None = None
    patience: int | None = None
    storage_path: str = path_field("runs/train")
    scaling: ScalingSection = field(default_factory=ScalingSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    max_failures: int = 0
    shuffle_buffer: int = 128
    tensorboard: str | None = path_field(None)
    register: str | None = None  # register the exported model under this name
    registry: str | None = path_field(None)  # the registry's root (None: $RADZERO_REGISTRY)
    storage: storage.S3Options = field(default_factory=storage.S3Options)

    def __post_init__(self) -> None:
        if self.optim.batch_size % self.scaling.num_workers:
            raise ValueError(
                f"config optim.batch_size {self.optim.batch_size} must divide evenly over "
                f"scaling.num_workers {self.scaling.num_workers}"
            )
        if self.optim.batch_size // self.scaling.num_workers < 2:
            raise ValueError("config optim.batch_size must give each worker at least 2 images")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"config patience must be >= 1 or null, got {self.patience}")
        if self.max_failures < -1:
            raise ValueError("config max_failures must be >= 0 (or -1: retry forever)")
        check_model_reference(self.model)

    def model_config(self) -> RadZeroConfig:
        """The model's config: the named one with ``model_overrides`` merged in."""
        return resolve_model_config(self.model, self.model_overrides)
