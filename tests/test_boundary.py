"""The library's import boundaries, each checked in a fresh interpreter.

The model, data, eval, config, storage, registry and inference modules are the part a notebook
or another framework uses without Ray (docs/architecture.md), and the figures leave the caller's
matplotlib as it was.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
WITHOUT_RAY = (
    "radzero.model",
    "radzero.data",
    "radzero.eval",
    "radzero.config",
    "radzero.storage",
    "radzero.registry",
    "radzero.inference",
    "radzero.cli.options",  # a command's arguments are checked before Ray starts
    "radzero.cli.phantom",
    "radzero.cli.convert_authors",
)

_IMPORT_ALL = """
import importlib, json, pkgutil, sys

imported, first_with_ray = [], None
for name in sys.argv[1:]:
    package = importlib.import_module(name)
    names = [name] + [
        info.name
        for info in pkgutil.walk_packages(getattr(package, "__path__", []), name + ".")
        if not info.name.endswith(".__main__")  # a command line, run rather than imported
    ]
    for module in names:
        importlib.import_module(module)
        imported.append(module)
        if first_with_ray is None and "ray" in sys.modules:
            first_with_ray = module
print(json.dumps({"imported": imported, "first_with_ray": first_with_ray}))
"""

_DRAW_ALL = """
import json, sys
import numpy as np
from radzero.eval import figures

out = sys.argv[1]
rng = np.random.default_rng(0)
labels = rng.integers(0, 2, (40, 2)).astype(float)
labels[0, 0] = np.nan
figures.roc_figure(labels, rng.random((40, 2)), ["effusion", "nodule"], f"{out}/roc.png")
mask = np.zeros((32, 32), bool)
mask[4:12, 4:12] = True
panel = figures.Panel("effusion", rng.random((32, 32)), [(2, 2, 10, 10)], 0.7, mask, True)
figures.overlay_figure([rng.random((32, 32))], [[panel]], f"{out}/overlays.png")
history = [{"epoch": e, "loss": 2.0 / e, "temperature": 0.07} for e in (1, 2, 3)]
figures.history_figure(history, f"{out}/training.png")
pyplot = "matplotlib.pyplot" in sys.modules
import matplotlib
print(json.dumps({"pyplot": pyplot, "backend": matplotlib.get_backend()}))
"""


def _fresh_python(code: str, *args: str, env: dict | None = None) -> dict:
    """Run ``code`` in a new interpreter that imports this checkout; its last line as JSON."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": path, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_library_without_the_platform_never_imports_ray() -> None:
    found = _fresh_python(_IMPORT_ALL, *WITHOUT_RAY)
    assert found["first_with_ray"] is None, f"importing {found['first_with_ray']} imports ray"
    # The walk reached every module file of those packages, so a new one is covered too.
    files = set(WITHOUT_RAY[3:])
    for package in WITHOUT_RAY[:3]:
        for path in (ROOT / package.replace(".", "/")).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__main__":
                continue
            files.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    assert set(found["imported"]) == files


def test_figures_leave_the_callers_matplotlib_backend_alone(tmp_path) -> None:
    drawn = _fresh_python(_DRAW_ALL, str(tmp_path), env={"MPLBACKEND": "pdf"})
    assert drawn == {"pyplot": False, "backend": "pdf"}
    sizes = {"roc.png": (605, 550), "overlays.png": (506, 264), "training.png": (990, 352)}
    for name, size in sizes.items():
        with Image.open(tmp_path / name) as image:
            assert (image.format, image.size) == ("PNG", size)
            pixels = np.asarray(image.convert("L"))
        assert pixels.std() > 10  # something was drawn
