"""Where a trained model came from: the card the registry keeps beside its weights."""

from __future__ import annotations

import datetime
import os
import subprocess
from pathlib import Path
from typing import Any

from radzero import storage
from radzero.config import to_dict
from radzero.model.config import read_pretrained_meta
from radzero.platform import outputs
from radzero.platform.features import cache_location
from radzero.platform.train.config import TrainJobConfig

COMMIT_VARIABLE = "RADZERO_GIT_COMMIT"


def git_commit() -> str | None:
    """The commit of the code that runs: git's, else $RADZERO_GIT_COMMIT (a copy without .git,
    such as a ``ray job submit`` working_dir), else None."""
    try:
        found = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return found.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return os.environ.get(COMMIT_VARIABLE)


def model_card(
    job: TrainJobConfig,
    model: str,
    validation: dict[str, Any],
    test: dict[str, Any] | None = None,
    sweep: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The card of the model exported to ``model`` by the training run ``job``.

    ``validation``: its best epoch's report; ``test``: its test-split metrics, when scored;
    ``sweep``: the sweep's name, folder, trial id and point, when a sweep trained it.
    """
    prepared = outputs.read_summary(job.data, "preprocess")
    model_config = job.model_config()
    cache = None
    if job.source == "features":
        size = int(model_config.vision.image_size or prepared["resolutions"][0])
        uri = cache_location(job.data, job.features or job.data, model_config.vision, size)
        cache = uri.rstrip("/").rsplit("/", 1)[-1]
    return {
        "metrics": {"validation": validation, "test": test},
        "config": {"train": to_dict(job), "model": model_config.to_dict()},
        "preprocess": read_pretrained_meta(model).get("preprocess"),
        "lineage": {
            "data": job.data,
            "prepared_fingerprint": prepared["fingerprint"],
            "feature_cache": cache,
            "training_run": storage.join(job.storage_path, job.name),
            "sweep": sweep,
            "git_commit": git_commit(),
            "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        },
    }
