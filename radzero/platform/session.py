"""Connecting a job to Ray: the cluster it was submitted to, or a local one."""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import ray
import torch

from radzero.config import load_config, path_fields

ROOT_VARIABLE = "RADZERO_ROOT"
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


def job_arguments(doc: str, config: type) -> argparse.ArgumentParser:
    """A job's parser with the shared ``--config FILE`` and ``--set key=value ...`` options."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--config", help=f"YAML file of {config.__name__} fields")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides")
    return parser


def start_job(
    parser: argparse.ArgumentParser,
    config: type[T],
    argv: Sequence[str] | None,
    section: str,
    paths: Mapping[str, str] | None = None,
) -> tuple[argparse.Namespace, T]:
    """Parse the arguments and the config, resolve its paths, then connect to Ray.

    ``section`` names this job in a multi-job config file; ``paths`` maps command-line options
    to the path fields they set. A bad key or path is a usage error.
    """
    args = parser.parse_args(argv)
    try:
        loaded: Any = load_config(config, args.config, args.set, section=section)
        for option, name in (paths or {}).items():
            if getattr(args, option) is not None:
                setattr(loaded, name, getattr(args, option))
        for name in path_fields(loaded):
            if getattr(loaded, name):
                setattr(loaded, name, resolve_path(getattr(loaded, name)))
    except ValueError as err:
        parser.error(str(err))
    loaded.storage.apply()
    connect()
    return args, loaded


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
    if _in_uploaded_working_dir():
        raise ValueError(
            f"path {path!r} is relative, and this job runs in Ray's temporary copy of its "
            f"working_dir, where it would be lost: give an absolute path or a URI, or submit with "
            f'--runtime-env-json \'{{"env_vars": {{"{ROOT_VARIABLE}": "$PWD"}}}}\''
        )
    return str(expanded.resolve())


def _submitted_runtime_env() -> dict[str, Any]:
    """The runtime_env of ``ray job submit`` when this driver was started by it, else {}."""
    try:
        job = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}"))
    except json.JSONDecodeError:
        return {}
    return job.get("runtime_env") or {}


def _in_uploaded_working_dir() -> bool:
    """Whether this driver was started by ``ray job submit`` with a ``working_dir``."""
    return bool(_submitted_runtime_env().get("working_dir"))


def connect() -> None:
    """Join the cluster of ``ray job submit`` (RAY_ADDRESS) or start a local Ray; set up logging.

    Hub downloads stay as configured by the caller's environment; workers inherit
    ``HF_HUB_OFFLINE`` and the AWS settings so every process reads storage the same way.
    """
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(message)s", datefmt="%H:%M:%S")
    if ray.is_initialized():
        return
    given = (_submitted_runtime_env().get("env_vars") or {}).keys()  # Ray refuses to set twice
    env = {key: value for key, value in passed_env().items() if key not in given}
    if os.environ.get("RAY_ADDRESS"):
        ray.init(runtime_env={"env_vars": env} if env else None, logging_level=logging.WARNING)
    else:
        start_local_ray(env=env)


def passed_env() -> dict[str, str]:
    """The variables of this process that every Ray process of a job gets too: hub access,
    the AWS settings of storage, RADZERO_ROOT."""
    return {key: os.environ[key] for key in PASSED_VARIABLES if key in os.environ}


def job_runtime_env() -> dict[str, Any]:
    """What a job's own Ray processes run with, for what it starts to outlive it (a Serve
    application): ``ray job submit``'s runtime_env (its working_dir holds the code) with
    :func:`passed_env` added to its env_vars."""
    submitted = dict(_submitted_runtime_env())
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
