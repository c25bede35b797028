"""Sweep RadZero's ablations with Ray Tune: one Ray Train run per trial on the feature cache.

The config is a TuneJobConfig, or a file with a jobs.tune section (configs/local.yaml,
configs/paper.yaml). Missing feature caches are computed first; then every trial trains, its
best checkpoint is scored on the test split, OUT/ablation.{csv,md,png} are written and the
winner is registered (register.name) in the registry (registry, else $RADZERO_REGISTRY).
Running the same command again resumes an interrupted sweep. Works directly and through
`ray job submit`.
"""

from __future__ import annotations

import json

from radzero.cli.options import command_parser, require_options
from radzero.platform.session import start_job
from radzero.platform.tune import TuneJobConfig, sweep


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("tune", __doc__, TuneJobConfig)
    _, config = start_job(parser, TuneJobConfig, argv, "tune")
    require_options(parser, config, "data", "benchmark_root")
    summary = sweep(config)
    print(f"tune: {len(summary['trials'])} trials; winner {summary['winner']}; {summary['files']}")
    print(json.dumps({k: v for k, v in summary.items() if k != "trials"}))
    return 0
