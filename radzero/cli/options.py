"""What every ``radzero`` command shares: ``--config FILE``, ``--set KEY=VALUE`` and paths.

Ray-free, so that a command's arguments are checked before anything starts.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from radzero.config import load_config, path_fields, reference_fields

ROOT_VARIABLE = "RADZERO_ROOT"

T = TypeVar("T")


def command_parser(command: str, doc: str, config: type) -> argparse.ArgumentParser:
    """The parser of ``radzero COMMAND``: its docstring as help, ``--config`` and ``--set``."""
    first, _, rest = doc.strip().partition("\n")
    parser = argparse.ArgumentParser(
        prog=f"radzero {command}",
        description=first,
        epilog=rest.strip() or None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help=f"YAML of {config.__name__} fields, or a file with a jobs.{command} section",
    )
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides, e.g. optim.lr=1e-4"
    )
    return parser


def parse_config(
    parser: argparse.ArgumentParser,
    config: type[T],
    argv: Sequence[str] | None,
    section: str,
    options: Mapping[str, str] | None = None,
) -> tuple[argparse.Namespace, T]:
    """The arguments, and the config they give: defaults, then the file's ``jobs.<section>``,
    then ``--set``, then the options that ``options`` maps to fields; relative paths resolved.

    A bad key, value or path is a usage error (exit status 2, naming it).
    """
    args = parser.parse_args(argv)
    try:
        given = {
            name: getattr(args, option)
            for option, name in (options or {}).items()
            if getattr(args, option) is not None
        }
        loaded: Any = load_config(config, args.config, args.set, section=section, values=given)
        references = set(reference_fields(loaded))
        for name in path_fields(loaded):
            value = getattr(loaded, name)
            if name in references and _is_reference(value):
                continue  # a registry reference (name@best), not a path
            if isinstance(value, list):
                setattr(loaded, name, [resolve_path(v) for v in value])
            elif value:
                setattr(loaded, name, resolve_path(value))
    except ValueError as err:
        parser.error(str(err))
    return args, loaded


def _is_reference(value: str) -> bool:
    from radzero.registry import is_reference  # torch and boto3: only when a command runs

    return bool(value) and is_reference(value)


def require_options(parser: argparse.ArgumentParser, config: Any, *names: str) -> None:
    """A usage error naming the path fields that neither the options nor the config set."""
    missing = [name for name in names if not getattr(config, name)]
    if missing:
        parser.error(f"set {', '.join(missing)} (as an option or in the config)")


def resolve_path(path: str) -> str:
    """A config path as a job uses it, the same whether it runs directly or as a Ray job.

    URIs and absolute paths are kept (``~`` expanded). A relative path is taken from
    ``$RADZERO_ROOT`` when set, else from the working directory; under ``ray job submit`` with
    a ``working_dir`` that directory is Ray's temporary copy, so there RADZERO_ROOT is required.
    """
    if "://" in path:
        return path
    expanded = Path(path).expanduser()
    if expanded.is_absolute():
        return str(expanded)
    root = os.environ.get(ROOT_VARIABLE)
    if root:
        return str(Path(root).expanduser().resolve() / expanded)
    if submitted_runtime_env().get("working_dir"):
        raise ValueError(
            f"path {path!r} is relative, and this job runs in Ray's temporary copy of its "
            f"working_dir, where it would be lost: give an absolute path or a URI, or submit with "
            f'--runtime-env-json \'{{"env_vars": {{"{ROOT_VARIABLE}": "$PWD"}}}}\''
        )
    return str(expanded.resolve())


def submitted_runtime_env() -> dict[str, Any]:
    """The runtime_env of ``ray job submit`` when this driver was started by it, else {}."""
    try:
        job = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}"))
    except json.JSONDecodeError:
        return {}
    return job.get("runtime_env") or {}
