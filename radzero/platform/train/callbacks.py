"""Ray Train callbacks of the training job (they run on the driver)."""

from __future__ import annotations

from typing import Any

import ray.train


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
