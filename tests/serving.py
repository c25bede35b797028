"""The served application the Serve tests share: one Serve on 127.0.0.1 per module,
a tiny model in a registry of its own, the API key and the test config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from radzero import registry
from radzero.model.radzero import create_model
from radzero.platform.session import free_port
from tests.conftest import TINY_CONFIG

FINDINGS = ["pleural effusion", "cardiomegaly"]
PHRASES = ["left pleural effusion", "enlarged heart"]
KEY = "test-key-0123"
THRESHOLD = 0.45  # the card's: chosen on validation Dice
# The replicas' environment: the API key, and autoscaling metrics every 0.5 s (not 10 s)
RUNTIME_ENV = {
    "env_vars": {
        "RADZERO_TEST_API_KEY": KEY,
        "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5",
        "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5",
    }
}


def register_tiny(root: Path, seed: int, card: dict, aliases: tuple[str, ...] = ()) -> int:
    torch.manual_seed(seed)
    folder = create_model(TINY_CONFIG).save_pretrained(str(root.parent / f"model-{seed}"))
    return registry.register(folder, "tiny", card, root=str(root), aliases=aliases)


def serve_test_config(root: Path, port: int, **changes):
    from radzero.platform.serve import ServeJobConfig
    from radzero.platform.serve.config import AutoscalingSection, BatchingSection, LimitsSection

    fields = {
        "model": "tiny@best",
        "registry": str(root),
        "port": port,
        "batching": BatchingSection(max_batch_size=4, wait_s=0.05),
        "autoscaling": AutoscalingSection(
            min_replicas=1,
            max_replicas=2,
            target_ongoing_requests=1,
            upscale_delay_s=1,
            downscale_delay_s=4,
            look_back_period_s=2,
        ),
        "limits": LimitsSection(max_body_mb=8, max_phrases=4, max_phrase_chars=60),
        "max_ongoing_requests": 4,
        "max_queued_requests": 4,
        "retry_after_s": 1,
        "model_cpus": 0.4,
        "strict_findings": True,
        "api_key_env": "RADZERO_TEST_API_KEY",
        **changes,
    }
    return ServeJobConfig(**fields)


@pytest.fixture(scope="module")
def served(ray_local, tmp_path_factory):
    """The app on 127.0.0.1 with a tiny registered model ("tiny@best", version 1), deployed
    as ``serve deploy`` does: yields (base URL, config, registry root). Shut down after the
    module, so its replicas' CPUs are free for the tests after it."""
    from ray import serve

    from radzero.platform.serve import deploy

    root = tmp_path_factory.mktemp("serve") / "registry"
    register_tiny(root, 0, {"metrics": {"test": {"dice_threshold": THRESHOLD}}}, ("best",))
    config = serve_test_config(root, free_port())
    deploy(config, RUNTIME_ENV)
    try:
        yield f"http://127.0.0.1:{config.port}", config, root
    finally:
        serve.shutdown()
