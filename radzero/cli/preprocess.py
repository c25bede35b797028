"""Preprocess a chest X-ray dataset with Ray Data: decode, resize, finding-sentences, split.

URI is a local path or s3://bucket/prefix. --manifest is a manifest file (CSV, JSONL, Parquet),
a phantom folder or a MIMIC-CXR root; both options may instead come from the config (a file
with a jobs.preprocess section, e.g. configs/local.yaml). Relative paths resolve from
$RADZERO_ROOT, else the working directory. Works directly and through `ray job submit`.
"""

from __future__ import annotations

import json

from radzero.cli.options import command_parser, require_options
from radzero.platform.preprocess import PreprocessJobConfig, preprocess
from radzero.platform.session import start_job


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("preprocess", __doc__, PreprocessJobConfig)
    parser.add_argument("--manifest", help="manifest file or dataset root URI")
    parser.add_argument("--out", help="output URI")
    paths = {"manifest": "manifest", "out": "out"}
    _, config = start_job(parser, PreprocessJobConfig, argv, "preprocess", paths)
    require_options(parser, config, "manifest", "out")
    summary = preprocess(config.manifest, config.out, config)
    print(
        f"preprocess: {summary['rows_out']} of {summary['rows_in']} rows prepared, "
        f"{summary['quarantined']} quarantined (see {config.out}/quarantine)"
    )
    print(json.dumps(summary))
    return 0
