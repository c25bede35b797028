"""Typed configuration: nested dataclasses read strictly from dicts, YAML files and overrides.

Every stage has one config dataclass. :func:`from_dict` builds it and rejects unknown keys (naming
them and the valid ones), values of the wrong type (``epochs: "ten"``) and values outside a
``Literal``, each with the key, the value and what is allowed; dataclasses check their own value
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
    """Build a (nested) config dataclass, rejecting unknown keys and values of the wrong type."""
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
    """``value`` checked against the type ``hint`` (and converted where lossless: int -> float)."""
    if hint is Any:
        return value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(arg, value, where)
            except ValueError as err:
                errors.append(err)
        if len(errors) == 1:
            raise errors[0]
        raise ValueError(f"config {where} must be {_describe(hint)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ValueError(f"config {where} must be one of {args}, got {value!r}")
        return value
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        if isinstance(value, Mapping):
            return from_dict(hint, value, f"{where}.")
        raise _type_error(hint, value, where)
    if origin in (list, tuple) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _type_error(hint, value, where)
        item = args[0] if args else Any
        return [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise _type_error(hint, value, where)
        key_hint, value_hint = args if args else (Any, Any)
        return {
            _convert(key_hint, k, f"{where}"): _convert(value_hint, v, f"{where}.{k}")
            for k, v in value.items()
        }
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _type_error(hint, value, where)
        return float(value)
    if hint in (int, str, bool):
        if isinstance(value, bool) != (hint is bool) or not isinstance(value, hint):
            raise _type_error(hint, value, where)
        return value
    return value


def _describe(hint: Any) -> str:
    """A reader's name for a type hint: 'an integer', 'a list of integers', ..."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        named = [_describe(a) for a in args if a is not type(None)]
        text = " or ".join(named)
        return f"{text} or null" if type(None) in args else text
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (list, tuple) or hint in (list, tuple):
        return f"a list of {_plural(args[0])}" if args else "a list"
    if origin is dict or hint is dict:
        return "a mapping"
    if dataclasses.is_dataclass(hint):
        return "a mapping of settings"
    return _NAMES.get(hint, getattr(hint, "__name__", str(hint)))


def _plural(hint: Any) -> str:
    name = _describe(hint)
    return _PLURALS.get(name, name)


_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
_PLURALS = {"an integer": "integers", "a number": "numbers", "a string": "strings"}


def _type_error(hint: Any, value: Any, where: str) -> ValueError:
    return ValueError(
        f"config {where} must be {_describe(hint)}, got {value!r} ({type(value).__name__})"
    )


def path_field(default: str | list[str] | None) -> Any:
    """A config field holding a local path or URI, or a list of them; jobs resolve relative
    paths on start-up."""
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata={"path": True})
    return dataclasses.field(default=default, metadata={"path": True})


def model_field(default: str) -> Any:
    """A config field naming a model: a folder or URI (resolved like :func:`path_field`) or a
    registry reference such as ``name@best`` (kept as it is)."""
    return dataclasses.field(default=default, metadata={"path": True, "reference": True})


def reference_fields(config: Any) -> list[str]:
    """Names of the top-level fields of ``config`` declared with :func:`model_field`."""
    return [f.name for f in dataclasses.fields(config) if f.metadata.get("reference")]


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
    values: Mapping[str, Any] | None = None,
) -> T:
    """The defaults of ``cls``, then the YAML file at ``path``, then ``key=value`` overrides,
    then ``values`` (top-level fields, e.g. from command-line options).

    A file whose top level is ``jobs: {<section>: {...}, ...}`` holds the configs of several
    jobs; ``section`` picks this job's (a job without a section there gets its defaults).
    """
    data: dict[str, Any] = {}
    if path is not None:
        if not Path(path).is_file():
            raise ValueError(f"config file {path} does not exist")
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
    data = deep_merge(deep_merge(data, parse_overrides(overrides)), dict(values or {}))
    return from_dict(cls, deep_merge(to_dict(cls()), data))
