"""What a person sees in the terminal while a long command runs: a line per stage, a progress
bar for long work, and Ray's own output kept in a log file (docs/architecture.md).

``quiet_output(log)`` sends everything written to this process's stdout and stderr (Ray's
logs, its workers' forwarded output, library warnings and progress bars) to ``log`` and hands
back a stream to the terminal; a :class:`Console` on that stream draws the stages.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from ray import tune
from ray.data import DataContext
from ray.data._internal.execution.execution_callback import ExecutionCallback

BAR_WIDTH = 24


class StageFailed(RuntimeError):
    """A stage raised: the message names the stage, the reason and where the logs are."""


_current: Stage | None = None  # the stage running now, which the callbacks below move


class Stage:
    """One stage's line: a bar over ``total`` ``unit`` (or a count when the total is unknown);
    ``operator`` names the Ray Data operator whose output rows move it."""

    def __init__(
        self, console: Console, number: int, name: str, total: int | None, unit: str, operator: str
    ) -> None:
        self.console, self.number, self.name = console, number, name
        self.total, self.unit, self.operator = total, unit, operator
        self.done = 0
        self.note = ""
        self.result = ""  # what the stage wrote where: its closing line
        self.started = time.monotonic()
        self._shown = -1.0

    def update(self, done: int, note: str = "") -> None:
        """Set how much is done (``note``: a short status after the count)."""
        self.done, self.note = max(done, 0), note or self.note
        self._draw()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def _prefix(self) -> str:
        return f"[{self.number}/{self.console.stages}] {self.name:<{self.console.width}}"

    def _draw(self) -> None:
        if self.total:
            fraction = min(self.done / self.total, 1.0)
            filled = round(fraction * BAR_WIDTH)
            bar = "#" * filled + "." * (BAR_WIDTH - filled)
            text = f"{self._prefix()} [{bar}] {self.done}/{self.total} {self.unit}"
        else:
            fraction = 0.0
            text = f"{self._prefix()} {self.done} {self.unit}".rstrip()
        text += f"  {self.elapsed():.0f} s" + (f"  {self.note}" if self.note else "")
        if self.console.interactive:
            self.console.write(
                "\r" + text[: self.console.columns - 1].ljust(self.console.columns - 1)
            )
        elif self.total and fraction >= self._shown + 0.25:
            self._shown = fraction  # a log file or a pipe gets a line every quarter
            self.console.write(text + "\n")


class Console:
    """Stage lines and progress bars on ``stream`` (a bar is redrawn in place on a terminal,
    written every quarter otherwise)."""

    def __init__(self, stream: TextIO, stages: int, width: int = 10) -> None:
        self.stream, self.stages, self.width = stream, stages, width
        self.interactive = stream.isatty()
        self.columns = os.get_terminal_size(stream.fileno()).columns if self.interactive else 100
        self.number = 0
        self.finished: list[dict[str, Any]] = []  # per stage done: name, seconds, result
        context = DataContext.get_current()
        if DataProgress not in context.custom_execution_callback_classes:
            context.custom_execution_callback_classes.append(DataProgress)

    def write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def line(self, text: str) -> None:
        """A line of its own, outside any stage."""
        self.write(text + "\n")

    @contextlib.contextmanager
    def stage(
        self,
        name: str,
        total: int | None = None,
        unit: str = "",
        operator: str = "",
        logs: str = "",
    ) -> Iterator[Stage]:
        """Run a stage: its bar while it runs, then ``[n/N] name  done in T s: <result>``.

        Set the result with :meth:`result`. An exception becomes :class:`StageFailed` naming
        the stage, the reason and ``logs`` (where to look), chained to the original.
        """
        global _current
        self.number += 1
        stage = _current = Stage(self, self.number, name, total, unit, operator)
        stage._draw()
        try:
            yield stage
        except Exception as err:
            if self.interactive:
                self.write("\n")
            reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
            message = f"stage {name} failed after {stage.elapsed():.0f} s: {reason}"
            self.line(f"{stage._prefix()} FAILED: {reason}" + (f"\n  logs: {logs}" if logs else ""))
            raise StageFailed(message + (f" (logs: {logs})" if logs else "")) from err
        finally:
            _current = None
        if self.interactive:
            self.write("\r" + " " * (self.columns - 1) + "\r")
        self.finished.append(
            {"name": name, "seconds": round(stage.elapsed(), 1), "result": stage.result}
        )
        closing = f"{stage._prefix()} done in {stage.elapsed():.0f} s"
        self.line(closing + (f": {stage.result}" if stage.result else ""))


class DataProgress(ExecutionCallback):
    """Moves the running stage's bar with the rows its Ray Data operator has put out. Reads
    Ray Data's executor; when a Ray release changes it, the bar stays still, nothing else."""

    def on_execution_step(self, executor: Any) -> None:
        stage = _current
        if stage is None or not stage.operator:
            return
        try:
            rows = [
                op.metrics.row_outputs_taken
                for op in executor._topology
                if stage.operator in op.name
            ]
        except (AttributeError, TypeError):
            return
        if rows:
            stage.update(max(rows))


class EpochProgress(tune.Callback):
    """Moves the running stage's bar with the epochs the sweep's trials have reported."""

    def __init__(self) -> None:
        self.epochs: dict[str, int] = {}
        self.ended: set[str] = set()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info):
        self.epochs[trial.trial_id] = int(result.get("epoch", 0))
        self._update(trials)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.ended.add(trial.trial_id)
        self._update(trials)

    on_trial_error = on_trial_complete

    def _update(self, trials: list) -> None:
        if _current is not None:
            note = f"{len(self.ended)}/{len(trials)} trials ended"
            _current.update(sum(self.epochs.values()), note=note)


@contextlib.contextmanager
def quiet_output(log: Path) -> Iterator[TextIO]:
    """Send this process's stdout and stderr (file descriptors 1 and 2, so Ray's C++ logs and
    its workers' forwarded output too, and ``sys.stdout``/``sys.stderr``) to ``log``; yield a
    stream to the terminal."""
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(2), "w", buffering=1)
    with (
        log.open("a", buffering=1) as handle,
        contextlib.redirect_stdout(handle),
        contextlib.redirect_stderr(handle),
    ):
        os.dup2(handle.fileno(), 1)
        os.dup2(handle.fileno(), 2)
        try:
            yield terminal
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            terminal.close()
