"""The preprocessing pipeline on Ray Data against a plain single-process loop, same work, same data.

Both read each image, decode it, resize it to every resolution, encode PNGs, settle the
finding-sentences (extracted from the report for every row) and write Parquet shards; the loop
calls the very function Ray Data maps over the rows. Ray's start-up (``ray.init`` and worker
processes importing the library) is excluded by a warm-up run on a few rows. The two then run
in alternating rounds, so that the machine's drifting speed hits both alike; ``speedup`` is the
ratio of their total times. The manifest cycles over a smaller set of distinct phantoms at
radiograph size, so that generating them stays quick. Then the feature cache's throughput with
the tiny backbone. The last line is one JSON object.

    python benchmarks/preprocess.py [--rows 512 --images 64 --size 2048 --rounds 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

import pandas as pd

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def _folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*.parquet"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=512, help="manifest rows")
    parser.add_argument("--images", type=int, default=64, help="distinct phantoms")
    parser.add_argument("--size", type=int, default=2048, help="phantom side (CXRs are 2-3k px)")
    parser.add_argument("--batch-rows", type=int, default=32, help="rows per task and shard")
    parser.add_argument("--rounds", type=int, default=2, help="alternating loop/Ray runs")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[224], help="must hold 224")
    args = parser.parse_args()

    import ray

    from radzero.data import phantom
    from radzero.data.manifest import load_manifest
    from radzero.data.prepare import assign_splits, normalise_manifest, prepare_batch
    from radzero.platform.features import FeaturesJobConfig, compute_features
    from radzero.platform.preprocess import PreprocessJobConfig, preprocess

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        phantom.write_dataset(root / "raw", args.images, size=args.size, seed=0)
        frame = pd.read_csv(root / "raw" / "manifest.csv", keep_default_na=False)
        frame = frame.iloc[[i % len(frame) for i in range(args.rows)]].reset_index(drop=True)
        frame["patient_id"] = [f"p{i}" for i in range(args.rows)]
        frame["sentences"] = ""  # every row extracts its sentences from the report
        frame.to_csv(root / "raw" / "manifest.csv", index=False)
        frame.head(16).to_csv(root / "raw" / "warmup.csv", index=False)
        config = PreprocessJobConfig(resolutions=args.resolutions, batch_rows=args.batch_rows)

        def run_loop(out: str) -> float:
            started = time.perf_counter()
            rows = normalise_manifest(load_manifest(root / "raw"), "raw")
            rows = assign_splits(rows, config.split)
            for i in range(0, len(rows), args.batch_rows):
                batch = rows.iloc[i : i + args.batch_rows]
                prepare_batch(batch, args.resolutions, 2**30, out)
            return time.perf_counter() - started

        def run_ray(out: str) -> tuple[float, dict]:
            started = time.perf_counter()
            summary = preprocess(str(root / "raw"), out, config)
            return time.perf_counter() - started, summary

        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR")
        ray.data.DataContext.get_current().enable_progress_bars = False
        # Several small tasks, so that every worker process has started and imported the library.
        warmup = dataclasses.replace(config, batch_rows=2)
        preprocess(str(root / "raw" / "warmup.csv"), str(root / "warmup"), warmup)
        # Alternate the two so that drift in the machine's speed hits both alike.
        loop_s, ray_s = [], []
        for index in range(args.rounds):
            loop_s.append(run_loop(str(root / f"loop{index}")))
            elapsed, summary = run_ray(str(root / f"ray{index}"))
            ray_s.append(elapsed)
        assert summary["rows_out"] == args.rows, summary

        features = FeaturesJobConfig(resolution=224, batch_size=32)
        cache = compute_features(str(root / "ray0"), str(root / "cache"), features)
        ray.shutdown()
        prepared_bytes = _folder_bytes(root / "ray0" / "prepared" / "224") / summary["rows_out"]
        cached_bytes = _folder_bytes(root / "cache" / "features") / cache["images"]

    result = {
        "rows": args.rows,
        "source_px": args.size,
        "cpus": os.cpu_count(),
        "rounds": args.rounds,
        "loop_images_per_s": round(args.rows * args.rounds / sum(loop_s), 2),
        "ray_images_per_s": round(args.rows * args.rounds / sum(ray_s), 2),
        "speedup_per_round": [round(a / b, 3) for a, b in zip(loop_s, ray_s, strict=True)],
        "speedup": round(sum(loop_s) / sum(ray_s), 3),
        "feature_cache_images_per_s": cache["images_per_s"],
        "prepared_parquet_bytes_per_image_224": round(prepared_bytes),
        "feature_bytes_per_image": cache["bytes_per_image"],
        "feature_parquet_bytes_per_image": round(cached_bytes),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
