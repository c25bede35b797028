"""Convert the authors' released RadZero checkpoint into this project's model folder.

SRC is the folder the authors' model saved (config.json, model.safetensors in bfloat16, the
MPNet tokenizer's files, preprocessor_config.json; e.g. a download of Deepnoid/RadZero), local
or s3://. DST receives a save_pretrained folder that bundles the backbone and the text encoder,
with card.json naming SRC; it then loads offline with RadZero.from_pretrained, `radzero
evaluate --set model=DST` and `radzero serve`. With --register NAME it is also registered in
--registry (or $RADZERO_REGISTRY) with the alias "authors": NAME@authors. Anything the
converter does not understand (a tensor, a shape, an option) stops it, naming it, before DST
is written. See docs/reproduce.md.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field

from radzero import storage
from radzero.cli.options import command_parser, parse_config, require_options
from radzero.config import path_field


@dataclass
class ConvertJobConfig:
    """Where the authors' folder is, where the converted model goes, and its registration."""

    source: str = path_field("")
    target: str = path_field("")
    register: str | None = None  # a registry name; None: not registered
    registry: str | None = path_field(None)  # None: $RADZERO_REGISTRY
    aliases: list[str] = field(default_factory=lambda: ["authors"])
    storage: storage.S3Options = field(default_factory=storage.S3Options)


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("convert-authors", __doc__, ConvertJobConfig)
    parser.add_argument("source", nargs="?", metavar="SRC")
    parser.add_argument("target", nargs="?", metavar="DST")
    parser.add_argument("--register", metavar="NAME", help="register DST as NAME@authors")
    parser.add_argument("--registry", metavar="ROOT", help="the registry (local or s3://)")
    options = {"source": "source", "target": "target", "register": "register"}
    _, config = parse_config(
        parser, ConvertJobConfig, argv, "convert-authors", options | {"registry": "registry"}
    )
    require_options(parser, config, "source", "target")
    config.storage.apply()
    from radzero import registry
    from radzero.model.convert import CheckpointError, convert_authors

    try:
        card = convert_authors(config.source, config.target)
    except (CheckpointError, FileNotFoundError) as err:
        print(f"radzero convert-authors: {err}", file=sys.stderr)
        return 1
    print(f"convert-authors: {config.source} -> {config.target}")
    print(json.dumps(card["parameters"]))
    if config.register:
        try:
            version = registry.register(
                config.target, config.register, card, config.registry, config.aliases
            )
        except ValueError as err:
            print(f"radzero convert-authors: registering failed: {err}", file=sys.stderr)
            return 1
        aliases = ", ".join(f"{config.register}@{alias}" for alias in config.aliases)
        print(f"registered {config.register}@{version} ({aliases})")
    return 0
