"""Serve a registered RadZero model with Ray Serve: the HTTP API and its page (docs/serving.md).

The config is a ServeJobConfig, or a file with a jobs.serve section (configs/local.yaml).
Submitted with `ray job submit`, it deploys on that cluster and returns; the application keeps
serving after the job ends. Run directly, it starts a local Ray on 127.0.0.1 and serves until
Ctrl-C (--detach returns at once, which stops that local Ray). Running it again with another
model, or other limits, swaps them in on the running replicas without a restart.
"""

from __future__ import annotations

import json
import os
import time

from radzero import registry
from radzero.cli.options import command_parser, resolve_path
from radzero.platform.serve import ServeJobConfig, deploy
from radzero.platform.session import job_runtime_env, start_job


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("serve", __doc__, ServeJobConfig)
    parser.add_argument("--detach", action="store_true", help="return once deployed")
    local = not os.environ.get("RAY_ADDRESS")  # read before start_job: it may start a Ray
    args, config = start_job(parser, ServeJobConfig, argv, "serve")
    if not registry.is_reference(config.model):
        config.model = resolve_path(config.model)
    deploy(config, job_runtime_env())
    url = f"http://{config.host}:{config.port}{config.route_prefix.rstrip('/')}"
    print(f"serve: {config.model} at {url}/ (API docs at {url}/docs)")
    print(json.dumps({"url": url, "model": config.model, "application": config.name}))
    if local and not args.detach:
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("serve: stopped")
    return 0
