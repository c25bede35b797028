"""Ray Tune: the paper's ablations as one sweep of Ray Train runs on the feature cache.

:mod:`~.space` names the dimensions and parses the values a config gives them, :mod:`~.config`
holds the sweep job's config and checks every trial's training job before Ray starts,
:mod:`~.driver` runs the sweep (caches, trials, scoring, ablation files, the registered
winner) and :mod:`~.progress` logs each trial event. See docs/tuning.md.
"""

from radzero.platform.tune.config import TuneJobConfig
from radzero.platform.tune.driver import sweep
from radzero.platform.tune.space import DIMENSIONS, PRESETS

__all__ = ["DIMENSIONS", "PRESETS", "TuneJobConfig", "sweep"]
