"""Page faults per radiograph decode, with and without ``reuse_freed_memory()``.

Each variant runs in a fresh process, as a Ray worker starts, and decodes the same 8-bit PNG
radiograph-size ramp (``--size`` px square) to 224 px ``--decodes`` times; the count of
minor page faults of each decode is read from ``getrusage`` and the median of the decodes after
the first two is reported, beside ``image_pages``, the pages of one image's uint8 and float32
planes. Without the call glibc maps fresh pages for some of each image's buffers; with it the
freed buffers are reused (docs/data.md, "Fresh pages for every image"). The last line is one
JSON object.

    python bench/decode_memory.py [--size 2048 --decodes 8]
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import statistics
import subprocess
import sys


def measure(variant: str, size: int, decodes: int) -> dict:
    """Minor page faults and seconds of each decode in this process."""
    import time

    import numpy as np
    from PIL import Image

    from radzero.data.images import read_image, resize, reuse_freed_memory

    if variant == "reuse" and not reuse_freed_memory():
        return {"supported": False}
    ramp = np.add.outer(np.arange(size), np.arange(size)) % 251
    buffer = io.BytesIO()
    Image.fromarray(ramp.astype(np.uint8)).save(buffer, "PNG", compress_level=1)
    data = buffer.getvalue()
    faults, seconds = [], []
    for _ in range(decodes):
        before, started = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
        resize(read_image(data), 224)
        seconds.append(time.perf_counter() - started)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return {"supported": True, "faults": faults, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="image side in pixels")
    parser.add_argument("--decodes", type=int, default=8, help="decodes per process (>= 3)")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.decodes < 3:
        parser.error("--decodes must be at least 3 (the first two are left out)")
    if args.variant:
        print(json.dumps(measure(args.variant, args.size, args.decodes)))
        return
    results = {}
    for variant in ("default", "reuse"):
        command = [sys.executable, __file__, "--variant", variant, *sys.argv[1:]]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        if not result["supported"]:
            print(f"{variant:>8}: the C library is not glibc", flush=True)
            continue
        steady = slice(2, None)  # the first decodes grow the heap in both variants
        results[variant] = {
            "faults_per_decode": statistics.median(result["faults"][steady]),
            "ms_per_decode": round(statistics.median(result["seconds"][steady]) * 1e3, 2),
        }
        r = results[variant]
        print(f"{variant:>8}: {r['faults_per_decode']:8.0f} faults, {r['ms_per_decode']} ms")
    print(json.dumps({"size": args.size, "image_pages": args.size**2 * 5 // 4096, **results}))


if __name__ == "__main__":
    main()
