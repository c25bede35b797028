"""Shared fixtures: tiny models built from configs (no hub downloads), a local Ray and a local S3.

Every service a test starts listens on 127.0.0.1 only.
"""

from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Iterator

import pytest

from radzero.platform.session import start_local_ray

pytest_plugins = ["tests.serving"]  # the Serve tests' session-wide application

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Ray on loopback without token auth (nothing else can reach it), its files in a temp folder.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ["RAY_AUTH_MODE"] = "disabled"
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
# Ray Train's polls every 0.2 s instead of 2 s, and no spot-preemption watcher actor (one
# process fewer per run): seconds per Train run, dozens of runs. The driver passes both on to
# Train's controller; the test cluster of test_jobs inherits them.
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
_TRAIN_ENV = ("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER")
_AWS_ENV = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")

TINY_VISION = {
    "hf_config": {
        "hidden_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 128,
        "patch_size": 16,
        "image_size": 64,
    },
    "image_size": 64,
}


TINY_CONFIG = {
    "vision": TINY_VISION,
    "align": {"layers": 1, "window": 1, "position": "sincos", "include_cls": False},
    "text": {"trainable": False},
}


@pytest.fixture
def tiny_config() -> dict:
    """A RadZero config small enough to build and run in well under a second."""
    return copy.deepcopy(TINY_CONFIG)


@pytest.fixture(scope="session")
def ray_local(s3_endpoint: str) -> Iterator[None]:
    """One local Ray for the whole session: 2 CPUs, loopback, files in a temp folder.

    Started after the local S3 endpoint so that every worker inherits its AWS settings. The
    dashboard runs on a known port named in RAY_API_SERVER_ADDRESS, as radzero's jobs run a
    local Ray: Ray Train frees a stopped Tune trial's workers through it (docs/tuning.md).
    """
    import ray

    passed = (*_AWS_ENV, *_TRAIN_ENV, "HF_HUB_OFFLINE")
    with tempfile.TemporaryDirectory(prefix="ray-") as tmp:
        os.environ["RAY_TMPDIR"] = tmp
        start_local_ray(
            num_cpus=2,
            temp_dir=tmp,
            env={k: os.environ[k] for k in passed if k in os.environ},
            logging_level="WARNING",
        )
        try:
            yield
        finally:
            ray.shutdown()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 HTTP endpoint (moto) on 127.0.0.1; sets the standard AWS environment for it."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in _AWS_ENV}
    os.environ.update(
        AWS_ENDPOINT_URL=url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
    )
    try:
        yield url
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """A fresh, empty bucket on the local endpoint; returns its name."""
    import uuid

    import boto3

    name = f"radzero-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def phantom_tokens(ray_local, tmp_path_factory) -> str:
    """64 phantoms at 64 px, preprocessed and their tiny-backbone tokens cached (45 training
    rows); the prepared folder's path. The phantoms are in its sibling ``raw``.

    Some validation labels are unknown (NaN in a Parquet manifest): one of every row's classes
    in turn, and every negative of "mass", which leaves it only known positives.
    """
    import numpy as np
    import pandas as pd

    from radzero.data import phantom
    from radzero.platform.features import FeaturesJobConfig, compute_features
    from radzero.platform.preprocess import PreprocessJobConfig, preprocess

    root = tmp_path_factory.mktemp("tokens")
    frame = pd.read_csv(phantom.write_dataset(root / "raw", 64, size=64, seed=0))
    findings = list(phantom.FINDINGS)
    frame[findings] = frame[findings].astype(float)
    val = frame.index[frame["split"] == "val"]
    for turn, index in enumerate(val):
        frame.loc[index, findings[turn % len(findings)]] = np.nan
    frame.loc[val[frame.loc[val, "mass"] == 0], "mass"] = np.nan
    frame.to_parquet(root / "raw" / "manifest.parquet")
    config = PreprocessJobConfig(resolutions=[64])
    summary = preprocess(str(root / "raw" / "manifest.parquet"), str(root / "data"), config)
    assert summary["splits"]["train"] == 45
    features = FeaturesJobConfig(vision=dict(TINY_VISION), batch_size=16)
    compute_features(str(root / "data"), str(root / "data"), features)
    return str(root / "data")
