"""The sweep job's config: the base training job, the space, the mode, and what follows a sweep
(test-split scoring, the registered winner, tracking). Every error shows at load, before Ray."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from radzero import storage
from radzero.config import from_dict, path_field
from radzero.data import benchmarks
from radzero.model.backbone import backbone_geometry
from radzero.platform.features import FeaturesJobConfig
from radzero.platform.train import REPORT_METRICS, TrainJobConfig
from radzero.platform.tune.space import (
    DIMENSIONS,
    Range,
    apply_point,
    candidate_values,
    grid_points,
    parse_space,
)

# Set by the sweep for each trial: the base training job may not name them.
_SET_PER_TRIAL = ("name", "data", "features", "storage_path", "tensorboard")
# What the winner can be chosen by: validation (best epoch) or test-split metrics.
SELECTION_METRICS = ("val_auc", "val_loss", "test_auc", "pointing", "dice")


@dataclass
class SearchSection:
    """``mode: search``: seeded Optuna proposals, ASHA on the reported epochs."""

    num_samples: int = 8
    seed: int = 0
    grace_period: int = 1  # epochs before ASHA may stop a trial
    reduction_factor: int = 2
    points: list[dict[str, Any]] = field(default_factory=list)  # tried first, in order

    def __post_init__(self) -> None:
        if self.num_samples < 1 or self.grace_period < 1 or self.reduction_factor < 2:
            raise ValueError(
                "config search.num_samples and grace_period must be >= 1, reduction_factor >= 2"
            )


@dataclass
class RegisterSection:
    """The winner, by ``metric`` (``mode``), registered as ``name`` (None: not registered)."""

    name: str | None = None
    metric: str = "val_auc"
    mode: Literal["max", "min"] = "max"

    def __post_init__(self) -> None:
        if self.metric not in SELECTION_METRICS:
            raise ValueError(
                f"config register.metric {self.metric!r} is not one of "
                f"{', '.join(SELECTION_METRICS)}"
            )


@dataclass
class TrackingSection:
    """``mlflow_uri``: log every trial to MLflow too ("local": ``sqlite`` under the sweep's out)."""

    mlflow_uri: str | None = None


@dataclass
class TuneJobConfig:
    """What ``jobs/tune.py`` sweeps: trials of ``train`` (a training job's fields, less the
    ones the sweep sets per trial) over ``space``, on the prepared ``data``.

    ``mode: grid`` runs every combination of the listed values (crossed with a ``preset``'s
    rows); ``mode: search`` samples ``search.num_samples`` points with a seeded Optuna and
    stops weak trials with ASHA on ``metric``. ``trial_cpus`` is what each trial's driver
    holds beside its Train workers (``train.scaling``). After the sweep every trial's best
    checkpoint is scored on ``benchmark`` (rooted at ``benchmark_root``) from the feature
    cache, and the winner is registered under ``registry`` (default: $RADZERO_REGISTRY).
    """

    name: str = "sweep"
    out: str = path_field("runs/tune")
    data: str = path_field("")
    features: str | None = path_field(None)  # where the caches live (default: data)
    train: dict[str, Any] = field(default_factory=dict)
    mode: Literal["grid", "search"] = "grid"
    preset: str | None = None
    rows: list[str] | None = None  # the preset's rows to run (None: all)
    space: dict[str, Any] = field(default_factory=dict)
    search: SearchSection = field(default_factory=SearchSection)
    metric: Literal["val_auc", "val_loss"] = "val_auc"
    max_concurrent_trials: int = 2
    trial_cpus: float = 0.25
    benchmark: str = "phantom"
    benchmark_root: str = path_field("")
    evaluate_batch_size: int = 32
    evaluate_gpus: float | None = None  # per scoring actor (None: 1 when the cluster has GPUs)
    register: RegisterSection = field(default_factory=RegisterSection)
    registry: str | None = path_field(None)
    tracking: TrackingSection = field(default_factory=TrackingSection)
    features_job: dict[str, Any] = field(default_factory=dict)  # FeaturesJobConfig fields
    storage: storage.S3Options = field(default_factory=storage.S3Options)

    def __post_init__(self) -> None:
        named = [key for key in _SET_PER_TRIAL if key in self.train]
        if named:
            raise ValueError(
                f"config train.{named[0]} is set by the sweep for each trial; "
                "give data/features/out at the top of the tune section"
            )
        if self.max_concurrent_trials < 1 or self.trial_cpus <= 0:
            raise ValueError("config max_concurrent_trials must be >= 1 and trial_cpus > 0")
        if self.benchmark not in benchmarks.READERS:
            raise ValueError(
                f"config benchmark {self.benchmark!r} is not one of {sorted(benchmarks.READERS)}"
            )
        if self.preset is not None and self.mode != "grid":
            raise ValueError("config preset: a preset is a grid; set mode: grid")
        if self.rows is not None and self.preset is None:
            raise ValueError("config rows: rows are a preset's; set preset too")
        from_dict(FeaturesJobConfig, self.features_job, where="features_job.")
        self.base_job()  # the base training job, checked with its own messages
        self.points()  # grid points, or the search points' names
        for name, values in candidate_values(self.parsed_space()).items():
            for value in values:
                self.trial_job({name: value}, name="check", where=f"config space.{name}={value}")
        for point in self.points():
            self.trial_job(point, name="check", where=f"config point {point}")
        if self.metric not in REPORT_METRICS:  # kept in step with the epoch report
            raise ValueError(f"config metric {self.metric!r} is not reported by an epoch")

    def parsed_space(self) -> dict[str, Any | list | Range]:
        """The space with each dimension parsed (:func:`~.space.parse_space`)."""
        return parse_space(self.space)

    def base_job(self) -> TrainJobConfig:
        """The training job every trial starts from (a placeholder name and folders)."""
        return from_dict(TrainJobConfig, self._base_dict("base"), where="train.")

    def points(self) -> list[dict[str, Any]]:
        """``mode: grid``: every trial's point. ``mode: search``: ``search.points`` (checked to
        name every searched dimension, as Optuna needs)."""
        space = self.parsed_space()
        if self.mode == "grid":
            return grid_points(space, self.preset, self.rows)
        searched = sorted(n for n, spec in space.items() if isinstance(spec, list | Range))
        for index, point in enumerate(self.search.points):
            unknown = sorted(set(point) - set(DIMENSIONS))
            missing = sorted(set(searched) - set(point))
            if unknown or missing:
                raise ValueError(
                    f"config search.points[{index}] must name exactly the searched dimensions "
                    f"{searched}: missing {missing}, unknown {unknown}"
                )
            for name in searched:
                spec, value = space[name], point[name]
                inside = (
                    spec.low <= value <= spec.high if isinstance(spec, Range) else value in spec
                )
                if not inside:
                    raise ValueError(
                        f"config search.points[{index}].{name} = {value!r} is outside the space"
                    )
        return [dict(point) for point in self.search.points]

    def trial_job(self, point: dict[str, Any], name: str, where: str = "config") -> TrainJobConfig:
        """The training job of one trial: the base job with ``point``'s values, its run
        under ``out/trials/<name>``; a value the model refuses raises naming ``where``."""
        fixed = {n: s for n, s in self.parsed_space().items() if not isinstance(s, list | Range)}
        try:
            job = from_dict(TrainJobConfig, apply_point(self._base_dict(name), fixed | point))
            _input_size(job)  # a size the backbone takes
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
        return job

    def resolutions(self) -> list[int]:
        """Every input size some trial trains at (one feature cache each)."""
        listed = self.parsed_space().get("resolution")
        points = self.points() + [
            {"resolution": r} for r in (listed if isinstance(listed, list) else [])
        ]
        return sorted({_input_size(self.trial_job(point, "check")) for point in points or [{}]})

    def trials_path(self) -> str:
        """Where each trial's Train run (checkpoints, history, exported model) goes."""
        return storage.join(self.out, "trials")

    def _base_dict(self, name: str) -> dict[str, Any]:
        tensorboard = storage.join(self.out, "tensorboard", name)
        return self.train | {
            "name": name,
            "data": self.data or "unset",
            "features": self.features,
            "storage_path": self.trials_path(),
            "tensorboard": None if storage.is_s3(self.out) else tensorboard,
        }


def _input_size(job: TrainJobConfig) -> int:
    """The side a trial's backbone reads, checked against its patch size when the backbone's
    config is at hand (a hub checkpoint offline is checked by the features job instead)."""
    vision = job.model_config().vision
    try:
        return backbone_geometry(vision).image_size
    except OSError:
        if vision.image_size is None:
            raise ValueError(
                f"the backbone {vision.checkpoint} cannot be read here: set "
                "model_overrides.vision.image_size or a resolution dimension"
            ) from None
        return vision.image_size
