"""The served application: the ingress bound to the model deployment, from a ServeJobConfig,
as an Application (``serve run``) or as a Serve config file (``serve deploy``, a RayService)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

from ray import serve
from ray.serve import Application

from radzero.platform.serve.api import Ingress
from radzero.platform.serve.config import ServeJobConfig
from radzero.platform.serve.model import ModelReplica
from radzero.platform.session import actor_gpus

IMPORT_PATH = "radzero.platform.serve:app"
MODEL, INGRESS = "RadZeroModel", "RadZeroAPI"


def deployment_options(config: ServeJobConfig) -> dict[str, dict[str, Any]]:
    """Each deployment's options, by name: the model and batching as the model's
    ``user_config``, autoscaling between ``min_replicas`` and ``max_replicas``, a bounded queue
    answered with 503 and ``Retry-After`` when full, fractional CPUs; the request limits as
    the ingress's ``user_config``."""
    scaling = config.autoscaling
    model_actor: dict[str, Any] = {"num_cpus": config.model_cpus}
    if config.model_gpus:
        model_actor["num_gpus"] = config.model_gpus
    backpressure = {"status_code": 503, "retry_after_s": config.retry_after_s}
    return {
        MODEL: {
            "max_ongoing_requests": config.max_ongoing_requests,
            "max_queued_requests": config.max_queued_requests,
            "backpressure_config": backpressure,
            "user_config": config.model_user_config(),
            "autoscaling_config": {
                "min_replicas": scaling.min_replicas,
                "initial_replicas": max(1, scaling.min_replicas),
                "max_replicas": scaling.max_replicas,
                "target_ongoing_requests": scaling.target_ongoing_requests,
                "look_back_period_s": scaling.look_back_period_s,
                "downscale_delay_s": scaling.downscale_delay_s,
                "upscale_delay_s": scaling.upscale_delay_s,
            },
            "ray_actor_options": model_actor,
        },
        INGRESS: {
            "num_replicas": config.ingress_replicas,
            "max_ongoing_requests": config.ingress_max_ongoing_requests,
            "max_queued_requests": config.ingress_max_ongoing_requests,
            "backpressure_config": backpressure,
            "user_config": config.ingress_user_config(),
            "ray_actor_options": {"num_cpus": config.ingress_cpus},
        },
    }


def build_app(config: ServeJobConfig | None = None) -> Application:
    """``Ingress.bind(ModelReplica.bind())`` with :func:`deployment_options` of ``config``
    (default: ``ServeJobConfig()``)."""
    options = deployment_options(config or ServeJobConfig())
    model = serve.deployment(ModelReplica).options(name=MODEL, **options[MODEL])
    return Ingress.options(name=INGRESS, **options[INGRESS]).bind(model.bind())


def http_options(config: ServeJobConfig) -> dict[str, Any]:
    """Serve's HTTP proxy settings of ``config``: host, port and the request timeout."""
    return {
        "host": config.host,
        "port": config.port,
        "request_timeout_s": config.request_timeout_s,
    }


def serve_config(
    config: ServeJobConfig, runtime_env: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The Serve config file of ``config`` (what ``serve deploy`` and a RayService's
    ``serveConfigV2`` take): :data:`IMPORT_PATH` with every deployment option spelled out, so
    the file alone decides what runs. ``runtime_env`` is the application's (e.g. ``env_vars``
    holding the API key that ``api_key_env`` names)."""
    deployments = [
        {"name": name, **options} for name, options in deployment_options(config).items()
    ]
    return {
        "proxy_location": "EveryNode",
        "http_options": http_options(config),
        "applications": [
            {
                "name": config.name,
                "route_prefix": config.route_prefix,
                "import_path": IMPORT_PATH,
                "runtime_env": dict(runtime_env or {}),
                "deployments": deployments,
            }
        ],
    }


def deploy(
    config: ServeJobConfig, runtime_env: Mapping[str, Any] | None = None, timeout_s: float = 300
) -> None:
    """Deploy :func:`serve_config` of ``config`` on the connected Ray, as ``serve deploy`` does,
    and wait until it runs (``model_gpus`` None: a GPU per model replica when the cluster has
    GPUs). Deployed this way, a later call that changes only a
    ``user_config`` (another model, other limits) reconfigures the running replicas in place;
    ``serve.run`` would replace them."""
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    if config.model_gpus is None:
        config = dataclasses.replace(config, model_gpus=actor_gpus(None))
    serve.start(http_options=http_options(config))
    schema = ServeDeploySchema.model_validate(serve_config(config, runtime_env))
    _get_global_client().deploy_apps(schema)
    wait_until_running(config.name, timeout_s)


def wait_until_running(name: str, timeout_s: float) -> None:
    """Block until the application ``name`` runs; raise with Serve's message if it fails."""
    deadline = time.monotonic() + timeout_s
    while True:
        application = serve.status().applications.get(name)
        status = application.status if application else "NOT_STARTED"
        if status == "RUNNING":
            return
        if status in ("DEPLOY_FAILED", "UNHEALTHY"):
            raise RuntimeError(f"Serve application {name!r} is {status}: {application.message}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"Serve application {name!r} not running after {timeout_s:g} s")
        time.sleep(0.5)


app = build_app()
