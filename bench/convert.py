"""Convert a checkpoint of the released model's size in the authors' format, and load it.

Writes a random checkpoint with the released RadZero's sizes (DINOv2-base at 518 px, MPNet-base,
2 align layers; tests/authors_checkpoint.py) in the authors' layout, converts it with
``radzero.model.convert.convert_authors`` and loads the result with ``RadZero.from_pretrained``,
in one process. Prints the tensor and parameter counts (the release: 461 tensors, 209.4M
parameters), the conversion's time against the load's and the peak memory against the
model's float32 size; the last line is one JSON object.

    .venv/bin/python bench/convert.py
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from safetensors import safe_open

from radzero.model import RadZero
from radzero.model.convert import convert_authors
from tests.authors_checkpoint import PAPER, write_authors_folder


def _size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="radzero-bench-convert-") as work:
        source = write_authors_folder(Path(work) / "authors", sizes=PAPER)
        with safe_open(source / "model.safetensors", "pt") as weights:
            tensors = len(list(weights.keys()))
        started = time.perf_counter()
        card = convert_authors(source, Path(work) / "converted")
        convert_s = time.perf_counter() - started
        started = time.perf_counter()
        model = RadZero.from_pretrained(Path(work) / "converted")
        load_s = time.perf_counter() - started
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        parameters = sum(p.numel() for p in model.parameters())
        result = {
            "tensors": tensors,
            "parameters_m": {k: round(v / 1e6, 1) for k, v in card["parameters"].items()},
            "model_parameters_m": round(parameters / 1e6, 1),
            "source_mb": round(_size_mb(source), 1),
            "converted_mb": round(_size_mb(Path(work) / "converted"), 1),
            "convert_s": round(convert_s, 1),
            "load_s": round(load_s, 1),
            "convert_over_load": round(convert_s / load_s, 2),
            "peak_rss_over_float32_model": round(peak_mb / (parameters * 4 / 2**20), 2),
        }
    print(f"{tensors} tensors, {result['model_parameters_m']}M parameters")
    print(f"convert {convert_s:.1f} s, load {load_s:.1f} s, peak RSS {peak_mb:.0f} MB")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
