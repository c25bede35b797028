"""The preprocessing pipeline on Ray Data against a plain single-process loop, same work, same data.

Both read each image, decode it, resize it to every resolution, encode PNGs, settle the
finding-sentences (extracted from the report for every row) and write Parquet; the loop calls
the very function Ray Data maps over the rows. Ray's start-up is excluded. Then the feature
cache's throughput with the tiny backbone. The last line is one JSON object.

    python benchmarks/preprocess.py [--count 400 --size 1024 --resolutions 224]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def _folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*.parquet"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--size", type=int, default=1024, help="phantom side in pixels")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[224], help="must hold 224")
    args = parser.parse_args()

    import ray

    from radzero.data import phantom
    from radzero.data.manifest import load_manifest
    from radzero.platform.features import FeaturesJobConfig, compute_features
    from radzero.platform.preprocess import (
        PreprocessJobConfig,
        assign_splits,
        normalise_manifest,
        prepare_batch,
        preprocess,
    )

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        phantom.write_dataset(root / "raw", args.count, size=args.size, seed=0)
        frame = pd.read_csv(root / "raw" / "manifest.csv", keep_default_na=False)
        frame["sentences"] = ""  # every row extracts its sentences from the report
        frame.to_csv(root / "raw" / "manifest.csv", index=False)
        config = PreprocessJobConfig(resolutions=args.resolutions)

        started = time.perf_counter()
        rows = assign_splits(normalise_manifest(load_manifest(root / "raw"), "raw"), config.split)
        prepared = prepare_batch(rows, args.resolutions, 2**30)
        for resolution in args.resolutions:
            table = prepared.drop(
                columns=[f"image_{r}" for r in args.resolutions if r != resolution]
            )
            out = root / "loop" / str(resolution)
            out.mkdir(parents=True)
            pq.write_table(pa.Table.from_pandas(table, preserve_index=False), out / "rows.parquet")
        loop_s = time.perf_counter() - started

        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR")
        ray.data.DataContext.get_current().enable_progress_bars = False
        started = time.perf_counter()
        summary = preprocess(str(root / "raw"), str(root / "ray"), config)
        ray_s = time.perf_counter() - started
        assert summary["rows_out"] == len(prepared[prepared["error"] == ""])

        cache = compute_features(
            str(root / "ray"), str(root / "cache"), FeaturesJobConfig(resolution=224, batch_size=32)
        )
        ray.shutdown()
        prepared_bytes = _folder_bytes(root / "ray" / "prepared" / "224") / summary["rows_out"]
        cached_bytes = _folder_bytes(root / "cache" / "features") / cache["images"]

    result = {
        "images": args.count,
        "source_px": args.size,
        "cpus": os.cpu_count(),
        "loop_images_per_s": round(args.count / loop_s, 2),
        "ray_images_per_s": round(args.count / ray_s, 2),
        "speedup": round(loop_s / ray_s, 3),
        "feature_cache_images_per_s": cache["images_per_s"],
        "prepared_parquet_bytes_per_image_224": round(prepared_bytes),
        "feature_bytes_per_image": cache["bytes_per_image"],
        "feature_parquet_bytes_per_image": round(cached_bytes),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
