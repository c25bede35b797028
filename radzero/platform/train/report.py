"""What every epoch of a training run reports: one dataclass, so the checkpoint metric a config
may name is checked against the same fields the worker fills in."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields


@dataclass
class EpochReport:
    """Rank 0's numbers after one epoch (validation ones gathered over every worker).

    They go to Ray's result, ``history.json``, TensorBoard and the checkpoint's metrics.
    """

    epoch: int
    step: int
    loss: float  # the mean MP-NCE of rank 0's steps in the epoch
    lr: float
    temperature: float
    images_per_s: float  # over all workers
    steps_per_s: float
    val_loss: float
    val_auc: float

    def to_dict(self) -> dict[str, float]:
        """The report as Ray Train and ``history.json`` take it."""
        return asdict(self)


REPORT_METRICS: tuple[str, ...] = tuple(f.name for f in fields(EpochReport))
