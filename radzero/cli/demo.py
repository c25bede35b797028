"""Run every stage on the embedded default: phantoms to a served model, and a report.

Phantoms -> preprocess -> features -> a Ray Tune sweep of the paper's ablation rows (the
demo's training) -> the winner registered -> evaluated -> served with Ray Serve -> queried
over HTTP -> OUT/report.md -> the service shut down; on a local Ray bound to 127.0.0.1 with a
local folder as storage. With configs/local.yaml (`make demo`) its jobs.demo section, e.g.
`--set count=1000 optim.epochs=4`. The terminal shows a line per stage; everything Ray prints
goes to OUT/logs/demo.log. A rerun continues from the stages that finished.
"""

from __future__ import annotations

import traceback
from pathlib import Path

from radzero.cli.options import command_parser, parse_config
from radzero.platform.console import Console, StageFailed, quiet_output
from radzero.platform.demo import STAGES, DemoConfig, run_demo
from radzero.platform.session import local_ray_scope


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("demo", __doc__, DemoConfig)
    parser.add_argument("--out", help="output folder")
    _, config = parse_config(parser, DemoConfig, argv, "demo", {"out": "out"})
    log = Path(config.out) / "logs" / "demo.log"
    print(f"radzero demo: {len(STAGES)} stages into {config.out}; Ray's output goes to {log}")
    with quiet_output(log) as terminal, local_ray_scope():
        config.storage.apply()
        try:
            run_demo(config, Console(terminal, len(STAGES)))
        except StageFailed as err:
            traceback.print_exc()  # into the log
            print(
                f"radzero demo: {err}\nA rerun continues from the stages that finished.",
                file=terminal,
            )
            return 1
        except KeyboardInterrupt:
            print(
                "radzero demo: interrupted; a rerun continues from the stages that finished.",
                file=terminal,
            )
            return 130
    return 0
