"""RadZero: explainable chest X-ray vision-language alignment.

The library API, imported on first use (``import radzero`` loads neither torch nor Ray)::

    model = radzero.create_model("radzero-tiny")            # or RadZero.from_pretrained(uri)
    pixels = radzero.load_image("cxr.png", model.preprocess)[None]
    probabilities = model.classify(["effusion"], images=pixels)
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from radzero.data.images import load_image, read_image
    from radzero.model import (
        RadZero,
        RadZeroConfig,
        create_model,
        list_models,
        resolve_model_config,
    )

try:
    __version__ = version("radzero")  # pyproject.toml's version, the one source
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

_LAZY = {
    "RadZero": "radzero.model",
    "RadZeroConfig": "radzero.model",
    "create_model": "radzero.model",
    "list_models": "radzero.model",
    "resolve_model_config": "radzero.model",
    "load_image": "radzero.data.images",
    "read_image": "radzero.data.images",
}

__all__ = [
    "RadZero",
    "RadZeroConfig",
    "__version__",
    "create_model",
    "list_models",
    "load_image",
    "read_image",
    "resolve_model_config",
]


def __getattr__(name: str) -> Any:
    """The library API on first access (PEP 562)."""
    if name not in _LAZY:
        raise AttributeError(f"module 'radzero' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
