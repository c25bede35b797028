"""Connecting a job to Ray: the cluster it was submitted to, or a local one."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import socket
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeVar

import ray
import torch

from radzero.cli.options import ROOT_VARIABLE, parse_config, submitted_runtime_env

API_SERVER_VARIABLE = "RAY_API_SERVER_ADDRESS"
PASSED_VARIABLES = (
    "HF_HUB_OFFLINE",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_EC2_METADATA_DISABLED",
    ROOT_VARIABLE,
)

T = TypeVar("T")


def start_job(
    parser: argparse.ArgumentParser,
    config: type[T],
    argv: Sequence[str] | None,
    section: str,
    options: Mapping[str, str] | None = None,
) -> tuple[argparse.Namespace, T]:
    """:func:`radzero.cli.options.parse_config`, then the config's storage settings, then
    :func:`connect` to Ray."""
    args, loaded = parse_config(parser, config, argv, section, options)
    loaded.storage.apply()  # type: ignore[attr-defined]
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
    given = (submitted_runtime_env().get("env_vars") or {}).keys()  # Ray refuses to set twice
    env = {key: value for key, value in passed_env().items() if key not in given}
    if os.environ.get("RAY_ADDRESS"):
        ray.init(runtime_env={"env_vars": env} if env else None, logging_level=logging.WARNING)
    else:
        start_local_ray(env=env)


@contextlib.contextmanager
def local_ray_scope() -> Iterator[None]:
    """Shut down, on leaving, the Ray that :func:`connect` started inside (a command's own
    local Ray, while its output still goes where the command sends it); a Ray that was
    already connected is left running."""
    connected = ray.is_initialized()
    try:
        yield
    finally:
        if not connected and ray.is_initialized():
            ray.shutdown()


def passed_env() -> dict[str, str]:
    """The variables of this process that every Ray process of a job gets too: hub access,
    the AWS settings of storage, RADZERO_ROOT."""
    return {key: os.environ[key] for key in PASSED_VARIABLES if key in os.environ}


def job_runtime_env() -> dict[str, Any]:
    """What a job's own Ray processes run with, for what it starts to outlive it (a Serve
    application): ``ray job submit``'s runtime_env (its working_dir holds the code) with
    :func:`passed_env` added to its env_vars."""
    submitted = dict(submitted_runtime_env())
    env_vars = {**passed_env(), **(submitted.get("env_vars") or {})}
    return {**submitted, "env_vars": env_vars}


def start_local_ray(
    num_cpus: int | None = None,
    temp_dir: str | None = None,
    env: Mapping[str, str] | None = None,
    logging_level: int | str = logging.WARNING,
) -> None:
    """Start a local Ray on 127.0.0.1 whose processes get ``env``.

    Its dashboard listens on a free port that RAY_API_SERVER_ADDRESS names to every process,
    so Ray Train's clean-up of a stopped Tune trial finds this Ray's State API even when other
    Ray instances run on the machine (docs/tuning.md).
    """
    port = free_port()
    os.environ[API_SERVER_VARIABLE] = address = f"http://127.0.0.1:{port}"
    ray.init(
        num_cpus=num_cpus,
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        dashboard_port=port,
        _temp_dir=temp_dir,
        runtime_env={"env_vars": {**(env or {}), API_SERVER_VARIABLE: address}},
        logging_level=logging_level,
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def actor_gpus(requested: float | None) -> float:
    """GPUs per Ray Data actor: ``requested``, or one when the cluster has GPUs (None)."""
    if requested is not None:
        return requested
    return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


def actor_pool_options(actors: int, num_cpus: float, num_gpus: float | None) -> dict[str, Any]:
    """``map_batches`` arguments for a pool of ``actors`` actors, each with ``num_cpus`` CPUs
    and ``num_gpus`` GPUs (None: one when the cluster has GPUs, see :func:`actor_gpus`)."""
    return {
        "compute": ray.data.ActorPoolStrategy(size=actors),
        "num_cpus": num_cpus,
        "num_gpus": actor_gpus(num_gpus),
    }


def default_device() -> torch.device:
    """The device an actor runs its model on: the GPU Ray gave it, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
