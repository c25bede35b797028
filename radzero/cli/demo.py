"""The demo job: phantoms -> preprocess -> features -> Ray Train -> zero-shot evaluation.

With configs/local.yaml (`make demo`) its jobs.demo section; e.g. `--set count=1500
optim.epochs=15 seed=1`. Writes DIR/phantom/report.md, metrics.json, figures and DIR/model.
"""

from __future__ import annotations

import json

from radzero.cli.options import command_parser
from radzero.platform.demo import DemoConfig, headline, run_demo
from radzero.platform.session import start_job


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("demo", __doc__, DemoConfig)
    parser.add_argument("--out", help="output folder")
    _, config = start_job(parser, DemoConfig, argv, "demo", {"out": "out"})
    print(json.dumps(headline(run_demo(config))))
    return 0
