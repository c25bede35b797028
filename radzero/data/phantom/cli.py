"""Command line of the generator (``python -m radzero.data.phantom``)."""

from __future__ import annotations

import argparse
import csv

from radzero.data.phantom.dataset import write_dataset
from radzero.data.phantom.lesions import FINDINGS


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m radzero.data.phantom",
        description="Write a seeded set of synthetic chest radiographs with reports and boxes.",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--count", type=int, required=True, help="number of images (>= 1)")
    parser.add_argument("--size", type=int, default=224, help="image side in pixels (>= 64)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prevalence", type=float, default=0.3, help="per-finding probability")
    parser.add_argument("--bit-depth", type=int, choices=(8, 16), default=8)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: write the dataset and print a one-line summary."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error(f"--count must be >= 1, got {args.count}")
    if args.size < 64:
        parser.error(f"--size must be >= 64, got {args.size}")
    if not 0.0 <= args.prevalence <= 1.0:
        parser.error(f"--prevalence must be within [0, 1], got {args.prevalence}")
    manifest = write_dataset(
        args.out, args.count, args.size, args.seed, args.prevalence, bit_depth=args.bit_depth
    )
    with manifest.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    positives = ", ".join(f"{name} {sum(int(r[name]) for r in rows)}" for name in FINDINGS)
    print(f"wrote {len(rows)} cases to {manifest}; positives: {positives}")
    return 0
