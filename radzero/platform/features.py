"""The feature cache: a frozen backbone's tokens, computed once per (backbone, resolution, data).

Reads ``<prepared>/prepared/<resolution>/`` (a finished preprocessing output) and writes
``<out>/features/<key>/tokens/*.parquet`` with one row per image: its ids, split, sentences,
labels and ``tokens``, a float16 (1 + L, D) tensor (CLS first, the backbone's last hidden
state). ``key`` = ``<backbone>-<resolution>-<prepared fingerprint>``, so a different backbone,
resolution or dataset never reads stale tokens. Ray Data runs the backbone in an actor pool, one
model per actor, on a GPU per actor when the cluster has GPUs.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import ray
import torch

from radzero import storage
from radzero.config import from_dict, path_field, to_dict
from radzero.data.hashing import fingerprint
from radzero.data.images import read_image, to_pixels
from radzero.model import check_model_reference, resolve_model_config
from radzero.model.backbone import FrozenBackbone, backbone_geometry
from radzero.model.config import VisionConfig
from radzero.platform import outputs
from radzero.platform.preprocess import read_prepared
from radzero.platform.session import actor_pool_options, default_device

log = logging.getLogger(__name__)

TOKEN_DTYPE = np.float16
_DROP = ("image", "report")


@dataclass
class FeaturesJobConfig:
    """Which backbone runs over which prepared resolution, and how the actors are sized.

    ``prepared`` is a finished preprocessing output; the tokens go under ``out``/features.
    """

    prepared: str = path_field("")
    out: str = path_field("")
    model: str = "radzero-tiny-local"  # an architecture config: its vision section is used
    vision: dict[str, Any] = field(default_factory=dict)  # overrides of that vision section
    resolution: int | None = None  # None: the backbone's input size
    batch_size: int = 32
    actors: int = 1
    num_cpus: float = 1.0
    num_gpus: float | None = None  # None: 1 per actor when the cluster has GPUs, else 0
    storage: storage.S3Options = field(default_factory=storage.S3Options)

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.actors < 1 or self.num_cpus <= 0:
            raise ValueError("config batch_size and actors must be >= 1 and num_cpus > 0")
        check_model_reference(self.model)

    def vision_config(self) -> VisionConfig:
        size = {} if self.resolution is None else {"image_size": self.resolution}
        return resolve_model_config(self.model, {"vision": self.vision | size}).vision


def backbone_name(vision: VisionConfig) -> str:
    """A filesystem-safe name: the checkpoint id, or ``random-<hash>`` for a seeded tiny config;
    ``-positions-scale_factor`` appended for transformers 4.39's position interpolation, whose
    tokens differ (so a cache, and the training and evaluation that read it, never mix them)."""
    if vision.checkpoint:
        name = vision.checkpoint.strip("/").replace("/", "--")
    else:
        spec = json.dumps({"hf_config": vision.hf_config, "seed": vision.seed}, sort_keys=True)
        name = "random-" + fingerprint(spec, length=10)
    if vision.position_interpolation != "size":
        name += f"-positions-{vision.position_interpolation}"
    return name


def cache_location(prepared: str, out: str, vision: VisionConfig, resolution: int) -> str:
    """Where the tokens of ``vision`` at ``resolution`` over ``prepared`` are cached under ``out``.

    The folder is ``<out>/features/<backbone>-<resolution>-<prepared fingerprint>``.
    """
    summary = outputs.read_summary(prepared, "preprocess")
    key = f"{backbone_name(vision)}-{resolution}-{summary['fingerprint'][:12]}"
    return storage.join(out, "features", key)


class TokenEncoder:
    """Ray Data actor: decodes prepared PNGs and runs the frozen backbone (one model per actor)."""

    def __init__(self, vision: dict[str, Any]) -> None:
        self.backbone = FrozenBackbone(from_dict(VisionConfig, vision))
        self.device = default_device()
        self.backbone.to(self.device)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        pixels = torch.stack(
            [
                to_pixels(read_image(png, name=name), self.backbone.preprocess)
                for png, name in zip(batch["image"], batch["source"], strict=True)
            ]
        ).to(self.device)
        with torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"
        ):
            tokens = self.backbone(pixels)
        out = batch.drop(columns=[c for c in _DROP if c in batch.columns])
        out["tokens"] = list(tokens.float().cpu().numpy().astype(TOKEN_DTYPE))
        return out


def compute_features(prepared: str, out: str, config: FeaturesJobConfig | None = None) -> dict:
    """Run the backbone over a finished preprocessing output (idempotent); return the summary."""
    config = config or FeaturesJobConfig()
    started = time.perf_counter()
    prepared_summary = outputs.read_summary(prepared, "preprocess")
    vision = config.vision_config()
    resolution, grid, width = backbone_geometry(vision)
    if resolution not in prepared_summary["resolutions"]:
        raise ValueError(
            f"the backbone needs {resolution} px images but {prepared} holds only "
            f"{prepared_summary['resolutions']}; preprocess with resolutions including {resolution}"
        )
    target = cache_location(prepared, out, vision, resolution)
    key = target.rstrip("/").rsplit("/", 1)[-1]
    run_key = fingerprint(f"{key}:{json.dumps(to_dict(vision), sort_keys=True)}")
    finished = outputs.finished_run(target, run_key, "features")
    if finished is not None:
        return finished

    rows = read_prepared(prepared, resolution)
    pool = actor_pool_options(config.actors, config.num_cpus, config.num_gpus)
    log.info(
        "features: %s at %d px over %d images, %d actor(s), %s GPU each",
        backbone_name(vision),
        resolution,
        prepared_summary["rows_out"],
        config.actors,
        pool["num_gpus"],
    )
    encoded = rows.map_batches(
        TokenEncoder,
        fn_constructor_kwargs={"vision": to_dict(vision)},
        batch_size=config.batch_size,
        batch_format="pandas",
        **pool,
    )
    staging = outputs.staging(target)
    staged_fs, staged_path = storage.resolve(storage.join(staging, "tokens"))
    encoded.write_parquet(staged_path, filesystem=staged_fs)

    tokens = 1 + grid**2
    elapsed = time.perf_counter() - started
    summary = {
        "key": key,
        "backbone": backbone_name(vision),
        "vision": to_dict(vision),
        "resolution": resolution,
        "images": prepared_summary["rows_out"],
        "token_shape": [tokens, width],
        "dtype": np.dtype(TOKEN_DTYPE).name,
        "bytes_per_image": tokens * width * np.dtype(TOKEN_DTYPE).itemsize,
        "prepared": prepared,
        "prepared_fingerprint": prepared_summary["fingerprint"],
        "elapsed_s": round(elapsed, 2),
        "images_per_s": round(prepared_summary["rows_out"] / elapsed, 2),
    }
    outputs.commit(staging, target, summary, run_key)
    log.info(
        "features: %d images -> %s (%.1f images/s)",
        summary["images"],
        target,
        summary["images_per_s"],
    )
    return summary


def read_features(target: str, shuffle_seed: int | None = None) -> ray.data.Dataset:
    """The cached tokens of a finished features output as a Ray Dataset.

    ``shuffle_seed``: read the files in a new seeded order on every execution.
    """
    return outputs.read_parquet(target, "features", "tokens", shuffle_seed=shuffle_seed)
