"""The model registry: named, numbered, never-overwritten RadZero models with cards and aliases.

A registry root is a local folder or an ``s3://bucket/prefix`` URI (the ``root`` argument, else
the ``RADZERO_REGISTRY`` environment variable). Layout::

    <root>/models/<name>/<version>/_CLAIM             who claimed the number, when
                                   config.json        the save_pretrained files
                                   model.safetensors
                                   card.json          the caller's card + name, version,
                                                      registered_at
                                   _REGISTERED        the completion marker, written last
    <root>/models/<name>/aliases/<alias>.json         {"version": N, "set_at": ...}

Versions are integers 1, 2, 3 ...; a reference is ``name`` (the latest), ``name@latest``,
``name@<alias>`` or ``name@<version>``.

:func:`register` writes in this order, so that a reader never sees a partial version:

1. it claims the next free number atomically: ``os.mkdir`` of the version folder on a local
   root, a conditional PutObject (``If-None-Match: *``) of ``_CLAIM`` on S3, which has no
   folders. A registration that loses the race tries the next number, so two registrations at
   once (threads, processes or machines) never share a version and none is ever overwritten;
2. the model files (the config last, as ``save_pretrained`` writes them), then ``card.json``;
3. the marker ``_REGISTERED``. Only a version with its marker exists for readers: ``latest`` is
   computed from the markers, and a version without one (a registration that crashed or is
   still writing) is refused by name. Its claim stays, so its number is never reused;
4. the aliases, one small object each, last, so that an alias never names an incomplete
   version.

The S3 claim needs a store that honours conditional writes (AWS S3, MinIO, moto's server); one
that ignored ``If-None-Match`` would let two racing registrations write the same version. A
claim whose response was lost and retried can read as taken: the number is then skipped, which
leaves a gap, never a shared version.
"""

from __future__ import annotations

import builtins
import json
import os
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from radzero import storage
from radzero.model.config import _path_like, read_pretrained_meta
from radzero.model.radzero import copy_pretrained

ENV_VAR = "RADZERO_REGISTRY"
CLAIM_NAME = "_CLAIM"
CARD_NAME = "card.json"
MARKER_NAME = "_REGISTERED"
ALIASES_DIR = "aliases"
LATEST = "latest"
CARD_FIELDS = ("name", "version", "registered_at")  # what register adds to the caller's card

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_REFERENCE = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(@(?P<selector>[A-Za-z0-9._-]+))?")
_VERSION = re.compile(r"[1-9][0-9]*")


@dataclass(frozen=True)
class _Versions:
    """What one model's folder holds: complete and incomplete version numbers, alias names."""

    complete: tuple[int, ...]
    incomplete: tuple[int, ...]
    aliases: tuple[str, ...]

    def describe(self) -> str:
        versions = ", ".join(map(str, self.complete)) or "none complete"
        if self.incomplete:
            versions += f" (incomplete: {', '.join(map(str, self.incomplete))})"
        aliases = ", ".join(sorted((*self.aliases, LATEST) if self.complete else self.aliases))
        return f"versions: {versions}; aliases: {aliases or 'none'}"


def is_reference(text: str) -> bool:
    """Whether ``text`` reads as a registry reference (``name`` or ``name@selector``) rather
    than a path: no path separator, not an existing path, and only name characters."""
    return _REFERENCE.fullmatch(text) is not None and not _path_like(text)


def register(
    model_dir: str | os.PathLike,
    name: str,
    card: Mapping[str, Any],
    root: str | os.PathLike | None = None,
    aliases: Iterable[str] = (),
) -> int:
    """Copy a ``save_pretrained`` folder into the registry as the next version of ``name``,
    with ``card`` (JSON-serialisable: metrics, config, lineage, preprocessing ...) stored as
    given plus ``name``, ``version`` and ``registered_at``; then set ``aliases`` to it.

    Returns the new version number. See the module docstring for the write order.
    """
    base = _base(root)
    _check_name(name)
    if isinstance(aliases, str):
        raise TypeError(f"aliases must be a sequence of alias names, e.g. ({aliases!r},)")
    aliases = tuple(aliases)
    for alias in aliases:
        _check_alias(alias)
    clash = sorted(set(CARD_FIELDS) & set(card))
    if clash:
        raise ValueError(f"the card must not hold {clash}: register sets {', '.join(CARD_FIELDS)}")
    try:
        json.dumps(dict(card))
    except (TypeError, ValueError) as err:
        raise ValueError(f"the card of {name!r} is not JSON-serialisable: {err}") from err
    read_pretrained_meta(model_dir)  # refuse a folder that is not a model before claiming
    version = _claim_next(base, name)
    uri = _version_uri(base, name, version)
    copy_pretrained(model_dir, uri)
    registered_at = _now()
    stored = {**card, "name": name, "version": version, "registered_at": registered_at}
    storage.write_text(storage.join(uri, CARD_NAME), json.dumps(stored, indent=2))
    _write_marker(uri, registered_at)
    for alias in aliases:
        _write_alias(base, name, alias, version)
    return version


def resolve(ref: str, root: str | os.PathLike | None = None) -> str:
    """The URI of the complete version folder that ``ref`` names (``name``, ``name@latest``,
    ``name@<alias>``, ``name@<version>``); a ``ValueError`` listing what exists otherwise."""
    name, selector = _parse(ref)
    base = _base(root, ref)
    versions = _scan(base, name)
    if selector is None or selector == LATEST:
        if not versions.complete:
            raise ValueError(f"model {name!r} has no complete version yet; {versions.describe()}")
        return _version_uri(base, name, versions.complete[-1])
    if _VERSION.fullmatch(selector):
        version = int(selector)
    else:
        alias_uri = _alias_uri(base, name, selector)
        try:
            version = _read_json(alias_uri)["version"]
        except FileNotFoundError:
            raise ValueError(
                f"model {name!r} has no alias {selector!r}; {versions.describe()}"
            ) from None
    _check_complete(name, version, versions)
    return _version_uri(base, name, version)


def list(name: str, root: str | os.PathLike | None = None) -> builtins.list[dict[str, Any]]:
    """The complete versions of ``name``, oldest first: ``{"version", "uri", "aliases",
    "card"}`` each, ``aliases`` sorted and holding ``latest`` on the newest."""
    base = _base(root)
    _check_name(name)
    versions = _scan(base, name)
    aliases_of: dict[int, builtins.list[str]] = {v: [] for v in versions.complete}
    for alias in versions.aliases:
        target = _read_json(_alias_uri(base, name, alias))["version"]
        if target in aliases_of:
            aliases_of[target].append(alias)
    if versions.complete:
        aliases_of[versions.complete[-1]].append(LATEST)
    return [
        {
            "version": version,
            "uri": _version_uri(base, name, version),
            "aliases": sorted(aliases_of[version]),
            "card": _read_json(storage.join(_version_uri(base, name, version), CARD_NAME)),
        }
        for version in versions.complete
    ]


def names(root: str | os.PathLike | None = None) -> builtins.list[str]:
    """The names in the registry that have at least one complete version, sorted."""
    base = _base(root)
    models = storage.join(base, "models")
    found = set()
    for uri in storage.list_files(models, suffix=MARKER_NAME):
        parts = _relative(models, uri)
        if len(parts) == 3 and parts[2] == MARKER_NAME and _VERSION.fullmatch(parts[1]):
            found.add(parts[0])
    return sorted(found)


def set_alias(name: str, alias: str, version: int, root: str | os.PathLike | None = None) -> None:
    """Point ``alias`` of ``name`` at a complete ``version`` (moving it if it is set)."""
    base = _base(root)
    _check_name(name)
    _check_alias(alias)
    _check_complete(name, version, _scan(base, name))
    _write_alias(base, name, alias, version)


def read_card(ref: str, root: str | os.PathLike | None = None) -> dict[str, Any]:
    """The card of the version that ``ref`` names."""
    return _read_json(storage.join(resolve(ref, root), CARD_NAME))


# -- helpers --------------------------------------------------------------------------------
def _base(root: str | os.PathLike | None, ref: str | None = None) -> str:
    """The registry root as the URIs ``storage.list_files`` returns (absolute when local)."""
    root = root if root is not None else os.environ.get(ENV_VAR)
    if not root:
        what = f" to resolve the registry reference {ref!r}" if ref else ""
        raise ValueError(f"no model registry{what}: pass its root or set {ENV_VAR}")
    _, path = storage.resolve(root)
    return f"s3://{path}" if storage.is_s3(str(root)) else path


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"invalid model name {name!r}: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )


def _check_alias(alias: str) -> None:
    if not isinstance(alias, str) or not _NAME.fullmatch(alias) or alias.isdigit():
        raise ValueError(
            f"invalid alias {alias!r}: use letters, digits, '.', '_' and '-', starting with a "
            "letter or digit, and not only digits (those name versions)"
        )
    if alias == LATEST:
        raise ValueError(f"{LATEST!r} cannot be set: it is always the newest complete version")


def _parse(ref: str) -> tuple[str, str | None]:
    match = _REFERENCE.fullmatch(ref)
    if match is None:
        raise ValueError(
            f"{ref!r} is not a registry reference: expected name, name@latest, name@<alias> "
            "or name@<version>"
        )
    return match["name"], match["selector"]


def _model_uri(base: str, name: str) -> str:
    return storage.join(base, "models", name)


def _version_uri(base: str, name: str, version: int) -> str:
    return storage.join(_model_uri(base, name), str(version))


def _alias_uri(base: str, name: str, alias: str) -> str:
    return storage.join(_model_uri(base, name), ALIASES_DIR, f"{alias}.json")


def _relative(folder: str, uri: str) -> builtins.list[str]:
    return uri[len(folder) :].strip("/").split("/")


def _read_versions(base: str, name: str) -> _Versions:
    """One listing of a model's folder: its version numbers, complete or not, and aliases."""
    model = _model_uri(base, name)
    seen, complete, aliases = set(), set(), set()
    for uri in storage.list_files(model):
        parts = _relative(model, uri)
        if len(parts) != 2:
            continue
        folder, file = parts
        if _VERSION.fullmatch(folder):
            seen.add(int(folder))
            if file == MARKER_NAME:
                complete.add(int(folder))
        elif folder == ALIASES_DIR and file.endswith(".json"):
            aliases.add(file.removesuffix(".json"))
    return _Versions(
        tuple(sorted(complete)), tuple(sorted(seen - complete)), tuple(sorted(aliases))
    )


def _scan(base: str, name: str) -> _Versions:
    """:func:`_read_versions` of a model that exists; a ``ValueError`` listing the names if not."""
    versions = _read_versions(base, name)
    if not versions.complete and not versions.incomplete:
        held = ", ".join(names(base)) or "nothing"
        raise ValueError(f"no model {name!r} in the registry {base}; it holds: {held}")
    return versions


def _check_complete(name: str, version: int, versions: _Versions) -> None:
    if version in versions.incomplete:
        raise ValueError(
            f"version {version} of {name} is incomplete (a registration crashed or is in progress)"
        )
    if version not in versions.complete:
        raise ValueError(f"model {name!r} has no version {version}; {versions.describe()}")


def _claim_next(base: str, name: str) -> int:
    """Claim the lowest free number above every version of ``name`` there is; returns it.

    The listing may be stale by the time of the claim: a number taken meanwhile is refused by
    :func:`_claim`, and the next one is tried.
    """
    body = json.dumps({"claimed_at": _now(), "host": socket.gethostname(), "pid": os.getpid()})
    if not storage.is_s3(base):
        os.makedirs(_model_uri(base, name), exist_ok=True)
    versions = _read_versions(base, name)
    version = max((*versions.complete, *versions.incomplete), default=0) + 1
    while not _claim(_version_uri(base, name, version), body.encode()):
        version += 1
    return version


def _claim(version_uri: str, body: bytes) -> bool:
    """Atomically create a version folder with its ``_CLAIM``; False when it exists already."""
    claim_uri = storage.join(version_uri, CLAIM_NAME)
    if not storage.is_s3(version_uri):
        try:
            os.mkdir(version_uri)
        except FileExistsError:
            return False
        storage.write_bytes(claim_uri, body)
        return True
    bucket, key = storage.resolve(claim_uri)[1].split("/", 1)
    client = _s3_client()

    def put() -> bool:
        try:
            client.put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*")
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code")
            if code == "PreconditionFailed":
                return False
            if code == "ConditionalRequestConflict":  # a concurrent claim of the key: ask again
                raise OSError(f"concurrent claim of {claim_uri}") from err
            raise
        return True

    return storage.with_retries(put, f"claim {claim_uri}")


def _s3_client() -> Any:
    """A boto3 S3 client from the standard AWS environment, as :func:`storage.s3_filesystem`
    reads it (boto3 itself honours ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``)."""
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    config = Config(
        connect_timeout=storage.CONNECT_TIMEOUT_S,
        read_timeout=storage.REQUEST_TIMEOUT_S,
        retries={"mode": "standard", "max_attempts": storage.RETRY_ATTEMPTS},
    )
    # One session per client: creating clients from boto3's default session is not thread-safe.
    return boto3.session.Session().client("s3", region_name=region, config=config)


def _write_marker(version_uri: str, registered_at: str) -> None:
    storage.write_text(
        storage.join(version_uri, MARKER_NAME), json.dumps({"registered_at": registered_at})
    )


def _write_alias(base: str, name: str, alias: str, version: int) -> None:
    storage.write_text(
        _alias_uri(base, name, alias), json.dumps({"version": version, "set_at": _now()})
    )


def _read_json(uri: str) -> Any:
    try:
        return json.loads(storage.read_text(uri))
    except json.JSONDecodeError as err:
        raise ValueError(f"{uri} is not valid JSON: {err}") from err


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
