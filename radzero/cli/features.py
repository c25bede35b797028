"""Cache a frozen backbone's tokens over a preprocessed dataset with Ray Data actors.

--prepared is the --out of `radzero preprocess`; tokens go to OUT/features/<key>/. Both may come
from the config instead (a jobs.features section). Works directly and through `ray job submit`.
"""

from __future__ import annotations

import json

from radzero.cli.options import command_parser, require_options
from radzero.platform.features import FeaturesJobConfig, compute_features
from radzero.platform.session import start_job


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("features", __doc__, FeaturesJobConfig)
    parser.add_argument("--prepared", help="a finished preprocessing output URI")
    parser.add_argument("--out", help="output URI (tokens under OUT/features/)")
    paths = {"prepared": "prepared", "out": "out"}
    _, config = start_job(parser, FeaturesJobConfig, argv, "features", paths)
    require_options(parser, config, "prepared", "out")
    summary = compute_features(config.prepared, config.out, config)
    print(f"features: {summary['images']} images cached as {summary['key']}")
    print(json.dumps(summary))
    return 0
