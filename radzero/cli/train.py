"""Train RadZero with Ray Train on cached backbone tokens (or prepared images).

The config is a TrainJobConfig, or a file with a jobs.train section (configs/local.yaml,
configs/paper.yaml). Running the same name and storage_path again resumes the run. The best
checkpoint is exported to STORAGE_PATH/NAME/model. Works directly and through `ray job submit`.
"""

from __future__ import annotations

import json

from radzero.cli.options import command_parser, require_options
from radzero.platform.session import start_job
from radzero.platform.train import TrainJobConfig, train


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("train", __doc__, TrainJobConfig)
    _, config = start_job(parser, TrainJobConfig, argv, "train")
    require_options(parser, config, "data")
    summary = train(config)
    best = summary["best"]
    print(
        f"train: {summary['epochs']} epochs, {summary['steps']} steps; best "
        f"{config.checkpoint.metric} {best[config.checkpoint.metric]:.4f} (epoch {best['epoch']})"
        f" -> {summary['model']}"
    )
    print(json.dumps({k: v for k, v in summary.items() if k != "history"}))
    return 0
