"""Per-backbone image preprocessing, resolved once and then stored with the model (timm-style).

A model created from an architecture resolves its preprocessing from the backbone's processor
config (:func:`resolve_preprocess`); ``save_pretrained`` writes the resolved values and
``from_pretrained`` restores them, so a saved model never re-reads the backbone's hub files to
know how its images are prepared.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from radzero.config import from_dict

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PreprocessConfig:
    """How raw grey radiographs become backbone input; calling it applies that transform.

    The image is resized directly (no crop, no aspect padding) to ``image_size`` square,
    replicated to ``channels`` and normalised with ``mean``/``std`` per channel:
    ``preprocess(gray)`` maps an (H, W) float array in [0, 1] to a float32 (channels, S, S)
    tensor. ``resize`` is "bilinear" (antialiased when shrinking, on the float image) or
    "bicubic-8bit", the authors' processor: the image rounded to 8 bits and resized by
    Pillow's bicubic filter, then divided by 255 (what a converted model uses).
    """

    image_size: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    channels: int = 3
    resize: Literal["bilinear", "bicubic-8bit"] = "bilinear"

    def __post_init__(self) -> None:
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if self.image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {self.image_size}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(
                f"mean/std need {self.channels} values, got {len(self.mean)}/{len(self.std)}"
            )
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std}")

    def __call__(self, gray: np.ndarray) -> torch.Tensor:
        """An (H, W) grey array in [0, 1] -> normalised float32 (channels, S, S) pixels.

        The resize is ``resize``'s; the grey plane is replicated to ``channels`` and
        normalised as ``(x - mean) / std``.
        """
        arr = np.asarray(gray)
        if arr.ndim != 2 or arr.size == 0 or not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(
                f"preprocessing expects a non-empty (H, W) float array, got shape {arr.shape} "
                f"dtype {arr.dtype}"
            )
        if self.resize == "bicubic-8bit":
            plane = resize_8bit_bicubic(arr, self.image_size)[None]
        else:
            plane = resize(arr, self.image_size)[None]
        mean = torch.tensor(self.mean, dtype=torch.float32).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(-1, 1, 1)
        return (plane - mean) / std

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PreprocessConfig:
        """The inverse of :meth:`to_dict` (JSON lists become tuples); unknown keys are refused."""
        return from_dict(cls, data, "preprocess.")


def resize(gray: np.ndarray, size: int) -> torch.Tensor:
    """An (H, W) grey array resized directly to (size, size), bilinear, antialiased to shrink."""
    plane = torch.from_numpy(np.asarray(gray, dtype=np.float32))[None, None]
    shrinking = max(plane.shape[-2:]) > size
    plane = F.interpolate(
        plane, size=(size, size), mode="bilinear", align_corners=False, antialias=shrinking
    )
    return plane[0, 0]


def resize_8bit_bicubic(gray: np.ndarray, size: int) -> torch.Tensor:
    """An (H, W) grey array in [0, 1] rounded to 8 bits, resized to (size, size) by Pillow's
    bicubic filter (which widens its support when shrinking), back in [0, 1]."""
    levels = np.rint(np.clip(np.asarray(gray, dtype=np.float64), 0.0, 1.0) * 255).astype(np.uint8)
    resized = Image.fromarray(levels).resize((size, size), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0)


def resolve_preprocess(
    processor_config: dict | str | Path | None = None,
    image_size: int | None = None,
    channels: int = 3,
    default_size: int = 224,
) -> PreprocessConfig:
    """Resolve a backbone's preprocessing from its Hugging Face processor config.

    ``processor_config`` is the parsed ``preprocessor_config.json``, a path to it or to the
    checkpoint folder that holds it, or None (ImageNet statistics, as DINOv2 uses).
    ``image_size`` overrides the processor's crop size (the paper runs a 224-px backbone at 518);
    ``default_size`` applies when neither gives one.
    """
    cfg: dict = {}
    if isinstance(processor_config, (str, Path)):
        path = Path(processor_config)
        if path.is_dir():
            path = path / "preprocessor_config.json"
        if path.is_file():
            cfg = json.loads(path.read_text())
    elif isinstance(processor_config, dict):
        cfg = processor_config
    mean = tuple(float(v) for v in cfg.get("image_mean", IMAGENET_MEAN))
    std = tuple(float(v) for v in cfg.get("image_std", IMAGENET_STD))
    if len(mean) == 1:
        mean, std = mean * channels, std * channels
    if image_size is None:
        image_size = _processor_size(cfg) or default_size
    return PreprocessConfig(image_size=int(image_size), mean=mean, std=std, channels=channels)


def _processor_size(cfg: dict) -> int | None:
    for key in ("crop_size", "size"):
        value = cfg.get(key)
        if isinstance(value, int):
            return value
        if isinstance(value, dict):
            for sub in ("height", "shortest_edge", "width"):
                if sub in value:
                    return int(value[sub])
    return None
