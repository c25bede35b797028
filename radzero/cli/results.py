"""The paper's results table for any set of evaluated models, beside the published numbers.

Each NAME=EVAL_OUT names a row and the --out of `radzero evaluate` whose NAME/metrics.json
files it reads (local or s3://); they may also come from a config's jobs.results.runs. Prints
a Markdown table, and writes it to --out when given.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from radzero import storage
from radzero.cli.options import command_parser, parse_config
from radzero.config import path_field
from radzero.eval import results


@dataclass
class ResultsJobConfig:
    """The evaluated models (``NAME=EVAL_OUT``) and where the table goes (None: printed only)."""

    runs: list[str] = field(default_factory=list)
    out: str | None = path_field(None)


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("results", __doc__, ResultsJobConfig)
    parser.add_argument("runs", nargs="*", metavar="NAME=EVAL_OUT")
    parser.add_argument("--out", help="also write the table to this file (local or s3://)")
    args, config = parse_config(parser, ResultsJobConfig, argv, "results", {"out": "out"})
    if not (args.runs or config.runs):
        parser.error("name at least one evaluation as NAME=EVAL_OUT")
    try:
        runs = results.load_runs(args.runs or config.runs)
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))
    text = results.table(runs) + "\n"
    print(text, end="")
    if config.out:
        storage.write_text(config.out, text)
    return 0
