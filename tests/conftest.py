"""Shared fixtures: tiny models built from configs (no hub downloads)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

TINY_VISION = {
    "hf_config": {
        "hidden_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 128,
        "patch_size": 16,
        "image_size": 64,
    },
    "image_size": 64,
}


@pytest.fixture
def tiny_config() -> dict:
    """A RadZero config small enough to build and run in well under a second."""
    return {
        "vision": dict(TINY_VISION),
        "align": {"layers": 1, "window": 1, "position": "sincos", "include_cls": False},
        "text": {"trainable": False},
    }
