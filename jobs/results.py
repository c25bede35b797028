"""The paper's results table for any set of evaluated models, beside the published numbers.

python jobs/results.py NAME=EVAL_OUT [NAME=EVAL_OUT ...] [--out FILE]

Each EVAL_OUT is the --out of jobs/evaluate.py (its NAME/metrics.json files are read, local or
s3://); NAME labels that model's row. Prints a Markdown table (and writes it to FILE).
"""

from __future__ import annotations

import argparse

from radzero import storage
from radzero.eval import results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="NAME=EVAL_OUT")
    parser.add_argument("--out", help="also write the table to this file (local or s3://)")
    args = parser.parse_args(argv)
    try:
        runs = results.load_runs(args.runs)
    except (ValueError, FileNotFoundError) as err:
        parser.error(str(err))
    text = results.table(runs) + "\n"
    print(text, end="")
    if args.out:
        storage.write_text(args.out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
