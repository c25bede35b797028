"""Connecting a job to Ray: the cluster it was submitted to, or a local one."""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from typing import Any, TypeVar

import ray

from radzero.config import load_config

T = TypeVar("T")


def job_arguments(doc: str, config: type) -> argparse.ArgumentParser:
    """A job's parser with the shared ``--config FILE`` and ``--set key=value ...`` options."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--config", help=f"YAML file of {config.__name__} fields")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides")
    return parser


def start_job(
    parser: argparse.ArgumentParser, config: type[T], argv: Sequence[str] | None
) -> tuple[argparse.Namespace, T]:
    """Parse the arguments and the config (usage error on a bad key), then connect to Ray."""
    args = parser.parse_args(argv)
    try:
        loaded: Any = load_config(config, args.config, args.set)
    except ValueError as err:
        parser.error(str(err))
    loaded.storage.apply()
    connect()
    return args, loaded


def connect() -> None:
    """Join the cluster of ``ray job submit`` (RAY_ADDRESS) or start a local Ray; set up logging.

    Hub downloads stay as configured by the caller's environment; workers inherit
    ``HF_HUB_OFFLINE`` and the AWS settings so every process reads storage the same way.
    """
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    if ray.is_initialized():
        return
    passed = (
        "HF_HUB_OFFLINE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_EC2_METADATA_DISABLED",
    )
    env = {key: os.environ[key] for key in passed if key in os.environ}
    ray.init(runtime_env={"env_vars": env} if env else None, logging_level=logging.WARNING)
