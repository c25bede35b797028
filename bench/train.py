"""Ray Train against the plain PyTorch loop, and training from cached features against images.

``ray_overhead``: the training job (``radzero.platform.train.train``, one worker, cached tokens)
against a plain loop that calls the same ``train_step`` on the same training split, model,
settings and batch size, with as many torch threads as the Ray worker has. Both skip their
first epoch (Ray's start-up, data pipeline warm-up and the frozen text encoder filling its
sentence cache) and time the steady epochs; the ratio is plain steps/s over Ray steps/s. An
epoch's time includes the wait for its first batch (Ray Data runs the read again every epoch;
the plain loop holds the split in memory), so ``ray_epoch_wait_s`` reports that wait and the
``*_in_epoch`` numbers use only the time from the first step to the last step of each epoch.
``cache_speedup``: the same job from prepared images (decode and the frozen backbone every step)
against cached tokens, images/s of the steady epochs, 224 px, with the project's tiny backbone
(``radzero-tiny-local``: 2 layers, as deep as the 2 trainable align layers, so the backbone
is a small part of a step). ``cache_speedup_vit_ti``: the same with a ViT-Ti/16 backbone
(12 layers, 192 wide; the align layers unchanged). ``*_plain``: a few plain steps of the
tiny model and of one with a ViT-B/14 backbone, from pixels against from the backbone tokens
computed once beforehand (what the cache stores), seconds per step; for the tiny model this is
the most caching can gain. Backbones are randomly initialised. The last line is one JSON
object.

    python bench/train.py [--images 400 --batch-size 32 --epochs 3 --image-epochs 2]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

VIT_TI = {
    "hidden_size": 192,
    "num_hidden_layers": 12,
    "num_attention_heads": 3,
    "intermediate_size": 768,
    "patch_size": 16,
    "image_size": 224,
}
VIT_B = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "patch_size": 14,
    "image_size": 224,
}


_STARTED = time.perf_counter()


def _log(message: str) -> None:
    """A progress line on stderr (stdout ends with the JSON line), with the seconds so far."""
    elapsed = time.perf_counter() - _STARTED
    print(f"[train benchmark {elapsed:5.0f} s] {message}", file=sys.stderr, flush=True)


def _steady(history: list[dict[str, Any]], key: str) -> float:
    """The mean of ``key`` over every epoch but the first (the warm-up)."""
    return statistics.fmean(row[key] for row in history[1:])


def _epoch_wait(history: list[dict[str, Any]]) -> float:
    """Seconds per steady epoch beyond its steps at the in-epoch rate: the first batch's wait."""
    waits = []
    for previous, row in itertools.pairwise(history):
        steps = row["step"] - previous["step"]
        waits.append(steps / row["steps_per_s"] - steps / row["in_epoch_steps_per_s"])
    return statistics.fmean(waits)


def _in_epoch_steps_per_s(stamps: list[float]) -> float:
    """Steps/s between the first and the last step of one epoch (no first-batch wait)."""
    if len(stamps) < 2:
        raise ValueError("an epoch needs at least 2 steps; use more --images")
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def _log_epochs(label: str, history: list[dict[str, Any]]) -> None:
    """One progress line: steps/s per epoch, whole and between the first and last step."""
    whole = [round(row["steps_per_s"], 2) for row in history]
    inner = [round(row["in_epoch_steps_per_s"], 2) for row in history]
    _log(f"{label}: steps/s per epoch {whole}, first to last step {inner}")


def _job(
    data: str,
    storage_path: Path,
    name: str,
    source: str,
    epochs: int,
    args: argparse.Namespace,
    backbone: dict[str, Any] | None = None,
) -> Any:
    """The TrainJobConfig of one run: the tiny local model (or its ``backbone`` instead), one
    worker."""
    from radzero.config import from_dict
    from radzero.platform.train import TrainJobConfig

    return from_dict(
        TrainJobConfig,
        {
            "name": name,
            "data": data,
            "source": source,
            "model": "radzero-tiny-local",
            "model_overrides": {"vision": {"hf_config": backbone}} if backbone else {},
            "optim": {"epochs": epochs, "batch_size": args.batch_size, "seed": 0},
            "scaling": {"num_workers": 1, "cpus_per_worker": args.cpus_per_worker},
            "storage_path": str(storage_path),
        },
    )


def _run_ray(job: Any, folder: Path) -> dict[str, Any]:
    """``train(job)`` with the worker's step completion times and torch thread count.

    Adds ``in_epoch_steps_per_s`` to every epoch of the history and ``threads`` to the summary.
    """
    from radzero.platform.train import train

    folder.mkdir(parents=True, exist_ok=True)
    stamps_file, threads_file = folder / "stamps.txt", folder / "threads.txt"

    def record(step: int, rank: int) -> None:
        import torch

        with stamps_file.open("a") as out:
            out.write(f"{step} {time.time()}\n")
        if step == 1:
            threads_file.write_text(str(torch.get_num_threads()))

    started = time.perf_counter()
    summary = train(job, on_step=record)
    summary["wall_s"] = time.perf_counter() - started
    summary["threads"] = int(threads_file.read_text())
    stamps = dict(line.split() for line in stamps_file.read_text().splitlines())
    first = 1
    for row in summary["history"]:
        epoch = [float(stamps[str(step)]) for step in range(first, row["step"] + 1)]
        row["in_epoch_steps_per_s"] = _in_epoch_steps_per_s(epoch)
        first = row["step"] + 1
    return summary


def _load_train_split(job: Any) -> tuple[np.ndarray, list[list[str]]]:
    """The cached tokens (N, T, D) float16 and sentences of the training split, in memory."""
    from ray.data.expressions import col

    from radzero.platform.features import cache_location, read_features

    vision = job.model_config().vision
    target = cache_location(job.data, job.data, vision, int(vision.image_size))
    frame = read_features(target).filter(expr=col("split") == "train").to_pandas()
    tokens = np.stack([np.asarray(t, dtype=np.float16) for t in frame["tokens"]])
    return tokens, [list(s) for s in frame["sentences"]]


def _run_plain(
    job: Any, tokens: np.ndarray, sentences: list[list[str]], threads: int
) -> list[dict[str, float]]:
    """The plain loop (``radzero.model.training.fit``, the same ``train_step`` as the Ray
    workers) in this process; per-epoch steps/s and images/s."""
    import torch

    from radzero.model import RadZero
    from radzero.model.training import fit

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    stamps: dict[int, list[float]] = {}
    try:
        torch.manual_seed(job.optim.seed)
        model = RadZero(job.model_config())
        history = fit(
            model,
            torch.as_tensor(tokens, dtype=torch.float32),
            sentences,
            job.optim,
            on_step=lambda epoch, _: stamps.setdefault(epoch, []).append(time.perf_counter()),
        )
    finally:
        torch.set_num_threads(previous)
    return [
        row | {"in_epoch_steps_per_s": _in_epoch_steps_per_s(stamps[row["epoch"]])}
        for row in history
    ]


def _plain_steps(
    backbone: dict[str, Any] | None,
    raw: Path,
    sentences: list[list[str]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Seconds per plain step of the tiny model (or with ``backbone``) from pixels and tokens."""
    import torch

    from radzero.data.images import read_image, to_pixels
    from radzero.model import RadZero, resolve_model_config
    from radzero.model.training import (
        Batch,
        TrainConfig,
        build_optimizer,
        select_sentences,
        train_step,
    )

    vision = {"hf_config": backbone, "image_size": backbone["image_size"]} if backbone else {}
    config = resolve_model_config("radzero-tiny-local", {"vision": vision})
    torch.manual_seed(0)
    model = RadZero(config)
    train_config = TrainConfig(batch_size=args.plain_batch, seed=0)
    optimizer = build_optimizer(model, train_config)
    paths = sorted((raw / "images").glob("*.png"))[: args.plain_batch]
    pixels = torch.stack([to_pixels(read_image(path), model.preprocess) for path in paths])
    texts, owner = select_sentences(
        sentences[: len(paths)], train_config.multi_positive, random.Random(0)
    )
    tokens = model.backbone_tokens(pixels)  # computed once, as the feature cache does
    from_pixels = Batch(texts, owner, pixels=pixels)
    from_tokens = Batch(texts, owner, features=tokens)

    def timed(batch: Batch) -> float:
        started = time.perf_counter()
        train_step(model, batch, optimizer, None, train_config)
        return time.perf_counter() - started

    timed(from_pixels), timed(from_tokens)  # warm-up: allocations and the text cache
    pixel_s, token_s = [], []
    for _ in range(args.plain_steps):  # alternating, so that drift hits both alike
        pixel_s.append(timed(from_pixels))
        token_s.append(timed(from_tokens))
    label = "ViT-B/14" if backbone else "tiny"
    _log(
        f"{label}, plain steps: {statistics.fmean(pixel_s):.2f} s/step from pixels, "
        f"{statistics.fmean(token_s):.2f} s/step from tokens"
    )
    return {
        "token_shape": list(tokens.shape[1:]),
        "pixel_s_per_step": statistics.fmean(pixel_s),
        "token_s_per_step": statistics.fmean(token_s),
        "speedup": statistics.fmean(pixel_s) / statistics.fmean(token_s),
        "threads": torch.get_num_threads(),
    }


def _cache_speedup(
    data: str, root: Path, label: str, args: argparse.Namespace, backbone: dict[str, Any] | None
) -> dict[str, Any]:
    """Ray Train from cached tokens and from prepared images with one backbone."""
    from radzero.platform.features import FeaturesJobConfig, compute_features

    vision = {"hf_config": backbone} if backbone else {}
    compute_features(data, data, FeaturesJobConfig(resolution=224, batch_size=32, vision=vision))
    runs = {}
    for source in ("features", "images"):
        job = _job(
            data, root / "runs", f"{label}-{source}", source, args.image_epochs, args, backbone
        )
        runs[source] = _run_ray(job, root / f"ray-{label}-{source}")
        _log_epochs(f"Ray from {source}, {label} backbone", runs[source]["history"])
    features, images = (_steady(runs[s]["history"], "images_per_s") for s in runs)
    return {
        "features_images_per_s": round(features, 2),
        "images_images_per_s": round(images, 2),
        "speedup": round(features / images, 3),
    }


def main() -> None:
    """Generate phantoms, cache their tokens, run the comparisons, print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=800, help="phantoms (70%% train)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per step")
    parser.add_argument("--epochs", type=int, default=3, help="epochs for ray_overhead (1 warm-up)")
    parser.add_argument("--image-epochs", type=int, default=2, help="epochs per cache_speedup run")
    parser.add_argument("--cpus-per-worker", type=float, default=1.0, help="the Ray worker's")
    parser.add_argument("--plain-steps", type=int, default=3, help="timed plain steps per source")
    parser.add_argument("--plain-batch", type=int, default=8, help="images per plain step")
    args = parser.parse_args()
    if args.epochs < 2 or args.image_epochs < 2:
        parser.error("--epochs and --image-epochs must be >= 2 (the first is a warm-up)")

    import ray

    from radzero.data import phantom
    from radzero.platform.features import FeaturesJobConfig, compute_features
    from radzero.platform.preprocess import PreprocessJobConfig, preprocess

    wall = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        phantom.write_dataset(root / "raw", args.images, size=224, seed=0)
        _log(f"{args.images} phantoms at 224 px")
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="ERROR")
        ray.data.DataContext.get_current().enable_progress_bars = False
        data = str(root / "data")
        prepared = preprocess(str(root / "raw"), data, PreprocessJobConfig(resolutions=[224]))
        cache = compute_features(data, data, FeaturesJobConfig(resolution=224, batch_size=32))
        _log(f"preprocessed {prepared['splits']} and cached {cache['token_shape']} tokens")

        features_job = _job(data, root / "runs", "features", "features", args.epochs, args)
        ray_features = _run_ray(features_job, root / "ray-features")
        _log_epochs("Ray from features", ray_features["history"])

        tokens, sentences = _load_train_split(features_job)
        plain = _run_plain(features_job, tokens, sentences, ray_features["threads"])
        _log_epochs("plain loop", plain)

        tiny = _cache_speedup(data, root, "tiny", args, None)
        vit_ti = _cache_speedup(data, root, "vit-ti", args, VIT_TI)
        ray.shutdown()

        tiny_plain = _plain_steps(None, root / "raw", sentences, args)
        vit_b_plain = _plain_steps(VIT_B, root / "raw", sentences, args)

    def per_epoch(history: list[dict[str, Any]], key: str) -> list[float]:
        return [round(row[key], 3) for row in history]

    ray_steps = _steady(ray_features["history"], "steps_per_s")
    plain_steps = _steady(plain, "steps_per_s")
    ray_in_epoch = _steady(ray_features["history"], "in_epoch_steps_per_s")
    plain_in_epoch = _steady(plain, "in_epoch_steps_per_s")
    result = {
        "images": args.images,
        "train_images": int(tokens.shape[0]),
        "batch_size": args.batch_size,
        "steps_per_epoch": len(range(0, tokens.shape[0], args.batch_size)),
        "epochs": args.epochs,
        "image_epochs": args.image_epochs,
        "cpus": os.cpu_count(),
        "worker_threads": ray_features["threads"],
        "ray_steps_per_s": round(ray_steps, 3),
        "plain_steps_per_s": round(plain_steps, 3),
        "ray_overhead": round(plain_steps / ray_steps, 3),
        "ray_steps_per_s_per_epoch": per_epoch(ray_features["history"], "steps_per_s"),
        "plain_steps_per_s_per_epoch": per_epoch(plain, "steps_per_s"),
        "ray_overhead_in_epoch": round(plain_in_epoch / ray_in_epoch, 3),
        "ray_epoch_wait_s": round(_epoch_wait(ray_features["history"]), 2),
        "ray_wall_s": round(ray_features["wall_s"], 1),
        "cache_speedup": tiny["speedup"],
        "cache_images_per_s": {
            "features": tiny["features_images_per_s"],
            "images": tiny["images_images_per_s"],
        },
        "cache_speedup_vit_ti": vit_ti["speedup"],
        "cache_images_per_s_vit_ti": {
            "features": vit_ti["features_images_per_s"],
            "images": vit_ti["images_images_per_s"],
        },
        "plain_batch": args.plain_batch,
        "cache_speedup_plain": round(tiny_plain["speedup"], 3),
        "cache_speedup_vit_b_plain": round(vit_b_plain["speedup"], 3),
        "vit_b_token_shape": vit_b_plain["token_shape"],
        "vit_b_s_per_step": {
            "pixels": round(vit_b_plain["pixel_s_per_step"], 3),
            "tokens": round(vit_b_plain["token_s_per_step"], 3),
        },
        "plain_threads": vit_b_plain["threads"],
        "wall_s": round(time.perf_counter() - wall, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
