"""The paper's results table for any set of evaluated models, beside the published numbers.

python jobs/results.py NAME=EVAL_OUT [NAME=EVAL_OUT ...] [--out FILE]

Each EVAL_OUT is the --out of jobs/evaluate.py (its NAME/metrics.json files are read, local or
s3://); NAME labels that model's row. Prints a Markdown table (and writes it to FILE).
"""

from __future__ import annotations

import argparse
import json

from radzero import storage
from radzero.eval import results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="NAME=EVAL_OUT")
    parser.add_argument("--out", help="also write the table to this file (local or s3://)")
    args = parser.parse_args(argv)
    runs = {}
    for run in args.runs:
        name, sep, folder = run.partition("=")
        if not sep or not name or not folder:
            parser.error(f"{run!r}: expected NAME=EVAL_OUT")
        found = storage.list_files(folder, suffix="/metrics.json")
        if not found:
            parser.error(f"{folder} holds no NAME/metrics.json of jobs/evaluate.py")
        runs[name] = [json.loads(storage.read_text(f)) for f in found]
    text = results.table(runs) + "\n"
    print(text, end="")
    if args.out:
        storage.write_text(args.out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
