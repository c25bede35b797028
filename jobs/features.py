"""Cache a frozen backbone's tokens over a preprocessed dataset with Ray Data actors.

python jobs/features.py --prepared URI --out URI [--config FILE] [--set key=value ...]

--prepared is the --out of jobs/preprocess.py; tokens go to OUT/features/<key>/.
Works directly and through `ray job submit`.
"""

from __future__ import annotations

import argparse
import json

from radzero.config import load_config
from radzero.platform.features import FeaturesJobConfig, compute_features
from radzero.platform.session import connect


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepared", required=True, help="a finished preprocessing output URI")
    parser.add_argument("--out", required=True, help="output URI (tokens under OUT/features/)")
    parser.add_argument("--config", help="YAML file of FeaturesJobConfig fields")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides")
    args = parser.parse_args(argv)
    try:
        config = load_config(FeaturesJobConfig, args.config, args.set)
    except ValueError as err:
        parser.error(str(err))
    config.storage.apply()
    connect()
    summary = compute_features(args.prepared, args.out, config)
    print(f"features: {summary['images']} images cached as {summary['key']}")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
