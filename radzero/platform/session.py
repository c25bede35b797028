"""Connecting a job to Ray: the cluster it was submitted to, or a local one."""

from __future__ import annotations

import logging
import os

import ray


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
