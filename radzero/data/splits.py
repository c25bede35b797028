"""The dataset splits and the other names datasets publish for them, in one table."""

from __future__ import annotations

SPLITS = ("train", "val", "test")
# MIMIC-CXR publishes "validate"; other datasets and manifests say "valid", "validation", "dev".
ALIASES = {"validate": "val", "valid": "val", "validation": "val", "dev": "val"}


def normalise_split(value: str) -> str:
    """``value`` as one of :data:`SPLITS`, case and surrounding spaces ignored, aliases mapped.

    Raises ValueError naming the value and the accepted names (an empty value included: callers
    that allow rows without a split check for it first).
    """
    name = str(value).strip().lower()
    name = ALIASES.get(name, name)
    if name not in SPLITS:
        raise ValueError(
            f"unknown split {value!r}: use one of {', '.join(SPLITS)} "
            f"({', '.join(ALIASES)} mean val)"
        )
    return name
