"""Training checkpoints: model, optimiser and schedule state to resume training exactly.

A checkpoint folder holds only JSON and safetensors (nothing is ever pickled):

* ``config.json`` + ``model.safetensors``: the model, via ``RadZero.save_pretrained``, so the
  folder also loads with ``RadZero.from_pretrained``;
* ``optimizer.safetensors``: every tensor of the optimiser's per-parameter state, under keys
  ``"{param_index}.{name}"``;
* ``training_state.json``: step, epoch, metrics, the optimiser's param groups and non-tensor
  state, the scheduler's state and the SHA-256 of both safetensors files.

Every file is first written to a staging folder inside the checkpoint folder and then moved in
with ``os.replace``, ``training_state.json`` last. A crash mid-save thus never leaves a partial
file under a final name, and the checksums reveal a folder whose files come from two saves.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from radzero.model.radzero import CONFIG_NAME, WEIGHTS_NAME, RadZero

STATE_NAME = "training_state.json"
OPTIMIZER_NAME = "optimizer.safetensors"
TRAINING_FORMAT_VERSION = 1
# Param-group values that optimisers expect as tuples (JSON only knows lists).
_TUPLE_KEYS = frozenset({"betas", "etas", "step_sizes"})
_REQUIRED_KEYS = ("format_version", "step", "epoch", "metrics", "optimizer", "scheduler", "files")

Scheduler = torch.optim.lr_scheduler.LRScheduler


def save_training_state(
    directory: str | Path,
    model: RadZero,
    optimizer: torch.optim.Optimizer,
    scheduler: Scheduler | None,
    step: int,
    epoch: int,
    metrics: dict[str, float] | None = None,
) -> Path:
    """Write a resumable training checkpoint to ``directory``; returns the folder.

    Raises ``ValueError`` before writing anything when a state value can't be stored as JSON.
    """
    directory = Path(directory)
    optim_state = optimizer.state_dict()
    tensors, param_state = _split_param_state(optim_state["state"])
    meta: dict[str, Any] = {
        "format_version": TRAINING_FORMAT_VERSION,
        "step": int(step),
        "epoch": int(epoch),
        "metrics": {str(k): float(v) for k, v in (metrics or {}).items()},
        "optimizer": {
            "class": type(optimizer).__name__,
            "param_groups": optim_state["param_groups"],
            "param_state": param_state,
        },
        "scheduler": None
        if scheduler is None
        else {"class": type(scheduler).__name__, "state": scheduler.state_dict()},
    }
    meta = _to_json(meta, "training state")
    directory.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=directory))
    try:
        model.save_pretrained(staging)
        save_file(tensors, str(staging / OPTIMIZER_NAME))
        meta["files"] = {name: _sha256(staging / name) for name in (WEIGHTS_NAME, OPTIMIZER_NAME)}
        (staging / STATE_NAME).write_text(json.dumps(meta, indent=2))
        for name in (CONFIG_NAME, WEIGHTS_NAME, OPTIMIZER_NAME, STATE_NAME):
            _fsync(staging / name)
            os.replace(staging / name, directory / name)
        _fsync(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory


def read_training_state(directory: str | Path) -> dict[str, Any]:
    """Step, epoch and metrics of a checkpoint, from its JSON alone (no tensors are loaded)."""
    meta = _read_meta(Path(directory) / STATE_NAME)
    return {"step": meta["step"], "epoch": meta["epoch"], "metrics": meta["metrics"]}


def load_training_state(
    directory: str | Path,
    model: RadZero,
    optimizer: torch.optim.Optimizer,
    scheduler: Scheduler | None,
) -> dict[str, Any]:
    """Restore model weights, optimiser and scheduler in place; returns step, epoch, metrics.

    ``optimizer`` and ``scheduler`` must be built like the saved ones (same param groups in the
    same order). With ``scheduler=None`` a saved schedule is ignored.
    """
    directory = Path(directory)
    state_path = directory / STATE_NAME
    meta = _read_meta(state_path)
    saved_optim, saved_sched = meta["optimizer"], meta["scheduler"]
    _check_optimizer(state_path, saved_optim, optimizer)
    if scheduler is not None:
        if saved_sched is None:
            raise ValueError(f"{state_path} holds no scheduler state to restore")
        if saved_sched["class"] != type(scheduler).__name__:
            raise ValueError(
                f"{state_path} holds a {saved_sched['class']} scheduler, "
                f"not a {type(scheduler).__name__}"
            )
    weights = _load_tensors(directory / WEIGHTS_NAME, meta["files"], state_path)
    optim_tensors = _load_tensors(directory / OPTIMIZER_NAME, meta["files"], state_path)

    groups = [
        _restore_group(saved, current)
        for saved, current in zip(saved_optim["param_groups"], optimizer.param_groups, strict=True)
    ]
    state = _join_param_state(optim_tensors, saved_optim["param_state"], directory / OPTIMIZER_NAME)
    model.load_trainable_state_dict(weights, source=str(directory / WEIGHTS_NAME))
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    if scheduler is not None:
        scheduler.load_state_dict(saved_sched["state"])
    return {"step": meta["step"], "epoch": meta["epoch"], "metrics": meta["metrics"]}


# -- optimiser state ------------------------------------------------------------------------
def _split_param_state(
    state: dict[int, dict[str, Any]],
) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, Any]]]:
    """Per-parameter state -> (flat tensors ``"{index}.{name}"``, non-tensor values by index)."""
    tensors: dict[str, torch.Tensor] = {}
    others: dict[str, dict[str, Any]] = {}
    for index, values in state.items():
        for name, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                others.setdefault(str(index), {})[name] = value
    return tensors, others


def _join_param_state(
    tensors: dict[str, torch.Tensor], others: dict[str, dict[str, Any]], source: Path
) -> dict[int, dict[str, Any]]:
    """The inverse of ``_split_param_state``."""
    state: dict[int, dict[str, Any]] = {}
    for key, tensor in tensors.items():
        index, sep, name = key.partition(".")
        if not sep or not index.isdigit():
            raise ValueError(f"{source}: unexpected key {key!r} (expected 'index.name')")
        state.setdefault(int(index), {})[name] = tensor
    for index, values in others.items():
        state.setdefault(int(index), {}).update(values)
    return state


def _check_optimizer(path: Path, saved: dict[str, Any], optimizer: torch.optim.Optimizer) -> None:
    """Refuse an optimiser whose class, param groups or group sizes differ from the saved one."""
    if saved["class"] != type(optimizer).__name__:
        raise ValueError(
            f"{path} holds a {saved['class']} optimizer, not a {type(optimizer).__name__}"
        )
    try:
        saved_sizes = [len(group["params"]) for group in saved["param_groups"]]
    except (KeyError, TypeError) as err:
        raise ValueError(f"{path}: malformed optimizer param groups ({err!r})") from err
    sizes = [len(group["params"]) for group in optimizer.param_groups]
    if len(saved_sizes) != len(sizes):
        raise ValueError(
            f"{path} holds {len(saved_sizes)} optimizer param groups, the optimizer has "
            f"{len(sizes)}: build it the same way as for the checkpoint"
        )
    if saved_sizes != sizes:
        raise ValueError(
            f"{path}: params per optimizer param group {saved_sizes} != the optimizer's {sizes}"
        )


def _restore_group(saved: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """A saved param group with the tuples JSON turned into lists made tuples again."""
    group = dict(saved)
    for key, value in saved.items():
        if isinstance(value, list) and (key in _TUPLE_KEYS or isinstance(current.get(key), tuple)):
            group[key] = tuple(value)
    return group


# -- files ----------------------------------------------------------------------------------
def _read_meta(path: Path) -> dict[str, Any]:
    """``training_state.json``, checked for a known version and the keys every version has."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: not a training checkpoint folder")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(meta, dict):
        raise ValueError(f"{path} is not valid training state: expected a JSON object")
    version = meta.get("format_version")
    if version != TRAINING_FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported training state format {version!r}")
    missing = [key for key in _REQUIRED_KEYS if key not in meta]
    if missing:
        raise ValueError(f"{path} is not valid training state: missing {missing}")
    if not all(type(meta[key]) is int for key in ("step", "epoch")):
        raise ValueError(f"{path}: step and epoch must be integers")
    return meta


def _load_tensors(path: Path, checksums: dict[str, str], state_path: Path) -> dict[str, Any]:
    """A safetensors file, refused when unreadable or not the one ``state_path`` was saved with."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: not a training checkpoint folder")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path} is corrupt or unreadable: {err}") from err
    if _sha256(path) != checksums.get(path.name):
        raise ValueError(
            f"{path} does not match the checksum in {state_path}: the file is corrupt or was "
            "written by a different save"
        )
    return tensors


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    """Flush a file (or a folder's entries) to disk, where the platform allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # e.g. folders on Windows
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _to_json(value: Any, where: str) -> Any:
    """A JSON-able copy of ``value`` (tuples become lists); ValueError naming what isn't."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value  # json writes NaN and Infinity as such and reads them back
    if isinstance(value, (list, tuple)):
        return [_to_json(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: key {key!r} is not a string, JSON would change it")
            out[key] = _to_json(item, f"{where}.{key}")
        return out
    raise ValueError(f"{where} is a {type(value).__name__}, which can't be stored as JSON")
