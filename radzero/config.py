"""Typed configuration: nested dataclasses read strictly from dicts, YAML files and overrides.

Every stage has one config dataclass. :func:`from_dict` builds it and rejects unknown keys (naming
them and the valid ones) and values outside a ``Literal``; dataclasses check their own value
ranges in ``__post_init__``. :func:`load_config` reads a YAML file and applies ``key.sub=value``
command-line overrides on top.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, get_type_hints

import yaml

T = TypeVar("T")


def from_dict(cls: type[T], data: Mapping[str, Any] | None, where: str = "") -> T:
    """Build a (nested) config dataclass, rejecting unknown keys and bad literal values."""
    data = {} if data is None else data
    if not isinstance(data, Mapping):
        raise ValueError(f"config {where or 'root'}: expected a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        hints_text = "".join(
            f" ({where}{key}: did you mean {close[0]!r}?)"
            for key in unknown
            if (close := difflib.get_close_matches(key, names, n=1))
        )
        raise ValueError(
            f"unknown config key(s) {', '.join(where + k for k in unknown)}{hints_text}; "
            f"valid keys: {', '.join(sorted(names))}"
        )
    values = {name: _convert(hints[name], value, f"{where}{name}") for name, value in data.items()}
    return cls(**values)


def _convert(hint: Any, value: Any, where: str) -> Any:
    nested = _dataclass_in(hint)
    if nested is not None and isinstance(value, Mapping):
        return from_dict(nested, value, f"{where}.")
    if typing.get_origin(hint) is Literal and value not in typing.get_args(hint):
        raise ValueError(f"config {where} must be one of {typing.get_args(hint)}, got {value!r}")
    return value


def _dataclass_in(hint: Any) -> type | None:
    """The dataclass type named by ``hint`` (directly or as ``X | None``), if any."""
    if dataclasses.is_dataclass(hint):
        return hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        found = [arg for arg in typing.get_args(hint) if dataclasses.is_dataclass(arg)]
        return found[0] if len(found) == 1 else None
    return None


def path_field(default: str | None) -> Any:
    """A config field holding a local path or URI; jobs resolve relative paths on start-up."""
    return dataclasses.field(default=default, metadata={"path": True})


def path_fields(config: Any) -> list[str]:
    """Names of the top-level fields of ``config`` declared with :func:`path_field`."""
    return [f.name for f in dataclasses.fields(config) if f.metadata.get("path")]


def to_dict(config: Any) -> dict[str, Any]:
    """A plain dict of a config dataclass (JSON- and YAML-friendly)."""
    return dataclasses.asdict(config)


def deep_merge(base: Mapping, overrides: Mapping) -> dict:
    """``base`` with ``overrides`` applied key by key, recursing into nested mappings."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["train.lr=1e-3", "resolutions=[224, 518]"]`` -> a nested dict; values are YAML."""
    result: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"override {item!r} is not of the form key=value")
        node = result
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r} conflicts with an earlier one")
        node[leaf] = yaml.safe_load(text) if text.strip() else None
    return result


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: Iterable[str] = (),
    section: str | None = None,
) -> T:
    """The defaults of ``cls``, then the YAML file at ``path``, then ``key=value`` overrides.

    A file whose top level is ``jobs: {<section>: {...}, ...}`` holds the configs of several
    jobs; ``section`` picks this job's (a job without a section there gets its defaults).
    """
    data: dict[str, Any] = {}
    if path is not None:
        text = Path(path).read_text()
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            raise ValueError(f"config file {path} is not valid YAML: {err}") from err
        if not isinstance(data, dict):
            raise ValueError(f"config file {path} must hold a mapping at the top level")
        if section is not None and set(data) == {"jobs"}:
            jobs = data["jobs"] if isinstance(data["jobs"], dict) else {}
            data = jobs.get(section) or {}
            if not isinstance(data, dict):
                raise ValueError(f"config file {path}: jobs.{section} must be a mapping")
    data = deep_merge(data, parse_overrides(overrides))
    return from_dict(cls, deep_merge(to_dict(cls()), data))
