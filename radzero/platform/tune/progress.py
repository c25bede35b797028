"""One log line per trial event, with the running best: what a person watches during a sweep."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray import tune

from radzero.platform.tune.space import describe

log = logging.getLogger("radzero.tune")


class SweepProgress(tune.Callback):
    """Logs trial started / epoch metric / stopped early / finished / errored, and the best.

    ``stopped(trial, epochs)`` tells whether a trial that ended after ``epochs`` epochs was
    stopped by the scheduler.
    """

    def __init__(self, metric: str, mode: str, stopped: Callable[[Any, int], bool]) -> None:
        self.metric, self.mode, self.stopped = metric, mode, stopped
        self.best: tuple[float, str] | None = None
        self.last_epoch: dict[str, int] = {}

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        log.info("tune: trial %s started: %s", trial.trial_id, describe(trial.config["point"]))

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        value, epoch = result.get(self.metric), int(result.get("epoch", 0))
        self.last_epoch[trial.trial_id] = epoch
        if value is None or math.isnan(value):
            return
        if self.best is None or (
            value > self.best[0] if self.mode == "max" else value < self.best[0]
        ):
            self.best = (float(value), trial.trial_id)
        log.info(
            "tune: trial %s epoch %d: %s %.4f (best %.4f, trial %s)",
            trial.trial_id,
            epoch,
            self.metric,
            value,
            *self.best,
        )

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        epoch = self.last_epoch.get(trial.trial_id, 0)
        ended = "stopped early" if self.stopped(trial, epoch) else "finished"
        log.info("tune: trial %s %s after epoch %d", trial.trial_id, ended, epoch)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        log.warning("tune: trial %s errored: %s", trial.trial_id, error_message(trial))


def error_message(trial: Any) -> str:
    """The last line of a failed trial's error (its exception's message), from the error file
    that Tune writes in the trial's local folder before it calls back (storage gets it later)."""
    local = Path(trial.error_file) if trial.error_file else None
    if local is not None and local.is_file():
        return last_line(local.read_text())
    return last_line(str(trial.get_pickled_error() or trial.get_error() or ""))


def last_line(text: str) -> str:
    """An error's last non-empty line (its exception's message), or "unknown error"."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "unknown error"
