"""Write a seeded set of synthetic chest radiographs ("phantoms") with reports, boxes and masks.

The folder gets images/, masks/ and manifest.csv, which `radzero preprocess --manifest` reads
and the phantom benchmark scores. Case i is drawn from the seed and i alone, so any subset
regenerates identically.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass

from radzero.cli.options import command_parser, parse_config, require_options
from radzero.config import path_field
from radzero.data.phantom import FINDINGS, write_dataset


@dataclass
class PhantomJobConfig:
    """How many phantoms, their size, seed, per-finding prevalence and bit depth; where."""

    out: str = path_field("")
    count: int = 600
    size: int = 224
    seed: int = 0
    prevalence: float = 0.3
    bit_depth: int = 8

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"config count must be >= 1, got {self.count}")
        if self.size < 64:
            raise ValueError(f"config size must be >= 64, got {self.size}")
        if not 0.0 <= self.prevalence <= 1.0:
            raise ValueError(f"config prevalence must be within [0, 1], got {self.prevalence}")
        if self.bit_depth not in (8, 16):
            raise ValueError(f"config bit_depth must be 8 or 16, got {self.bit_depth}")


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("phantom", __doc__, PhantomJobConfig)
    parser.add_argument("--out", help="output folder")
    parser.add_argument("--count", type=int, help="number of images (>= 1)")
    parser.add_argument("--size", type=int, help="image side in pixels (>= 64)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--prevalence", type=float, help="per-finding probability")
    parser.add_argument("--bit-depth", type=int, help="8 or 16")
    options = {name: name for name in ("out", "count", "size", "seed", "prevalence", "bit_depth")}
    _, config = parse_config(parser, PhantomJobConfig, argv, "phantom", options)
    require_options(parser, config, "out")
    manifest = write_dataset(
        config.out,
        config.count,
        config.size,
        config.seed,
        config.prevalence,
        bit_depth=config.bit_depth,
    )
    with manifest.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    positives = ", ".join(f"{name} {sum(int(r[name]) for r in rows)}" for name in FINDINGS)
    print(f"phantom: wrote {len(rows)} cases to {manifest}; positives: {positives}")
    return 0
