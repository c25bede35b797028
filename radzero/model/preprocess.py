"""Per-backbone image preprocessing, resolved in one place (timm-style)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PreprocessConfig:
    """How raw grey radiographs become backbone input.

    The image is resized directly (no crop, no aspect padding) to ``image_size`` square,
    replicated to ``channels`` and normalised with ``mean``/``std`` per channel.
    """

    image_size: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    channels: int = 3

    def __post_init__(self) -> None:
        if self.image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {self.image_size}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(
                f"mean/std need {self.channels} values, got {len(self.mean)}/{len(self.std)}"
            )
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std}")

    def to_dict(self) -> dict:
        return asdict(self)


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
