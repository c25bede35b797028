"""The ``radzero`` command line: ``radzero COMMAND [--config FILE] [--set KEY=VALUE ...]``.

One command per stage of the platform; each reads the ``jobs.<command>`` section of a config
file (configs/local.yaml, configs/paper.yaml) and works the same run directly or through
``ray job submit`` (``jobs/<command>.py`` are the same commands as scripts).
"""

from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
import os
import sys
from collections.abc import Sequence

LOOPBACK_VARIABLE = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": a local Ray on the loopback
COMMANDS = (
    "phantom",
    "preprocess",
    "features",
    "train",
    "tune",
    "evaluate",
    "results",
    "serve",
    "demo",
    "convert-authors",
)


def module(command: str) -> str:
    """The module that implements ``command`` (``convert-authors``: ``convert_authors``)."""
    return f"radzero.cli.{command.replace('-', '_')}"


def summary(command: str) -> str:
    """The first line of a command's docstring, read without importing it (nor Ray)."""
    spec = importlib.util.find_spec(module(command))
    assert spec is not None and spec.origin is not None
    with open(spec.origin) as handle:
        doc = ast.get_docstring(ast.parse(handle.read())) or ""
    return doc.partition("\n")[0]


def usage() -> str:
    """``radzero --help``: the commands and what each does."""
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {summary(name)}" for name in COMMANDS]
    return "\n".join(
        [
            "usage: radzero COMMAND [--config FILE] [--set KEY=VALUE ...] [options]",
            "",
            "commands:",
            *lines,
            "",
            "`radzero COMMAND --help` says what a command reads, writes and takes.",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``radzero COMMAND ...``; returns the exit status (2 for a usage error)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if not os.environ.get("RAY_ADDRESS"):
        # A command that starts its own Ray keeps every Ray process on 127.0.0.1 (Ray reads
        # this when it is imported, below); joining a cluster keeps the cluster's addresses.
        os.environ.setdefault(LOOPBACK_VARIABLE, "0")
    if command not in COMMANDS:
        close = difflib.get_close_matches(command, COMMANDS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        print(f"radzero: unknown command {command!r}{hint}\n\n{usage()}", file=sys.stderr)
        return 2
    return importlib.import_module(module(command)).main(rest)


def run(command: str) -> None:
    """``jobs/<command>.py``: exit with ``radzero COMMAND`` on this script's arguments."""
    raise SystemExit(main([command, *sys.argv[1:]]))
