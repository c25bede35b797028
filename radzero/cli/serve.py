"""Serve a registered RadZero model with Ray Serve: the HTTP API and its page (docs/serving.md).

The config is a ServeJobConfig, or a file with a jobs.serve section (configs/local.yaml).
Submitted with `ray job submit`, it deploys on that cluster and returns; the application keeps
serving after the job ends. Run directly, it starts a local Ray on 127.0.0.1 and serves until
Ctrl-C, which shuts the service down (--detach returns at once, which stops that local Ray;
--log FILE keeps Ray's output, access logs included, in FILE and the terminal quiet). Running
it again with another model, or other limits, swaps them in on the running replicas without a
restart. A model reference that the registry cannot resolve stops it before Ray starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path

import ray
from ray import serve

from radzero import registry
from radzero.cli.options import command_parser, parse_config, resolve_path
from radzero.platform.console import quiet_output
from radzero.platform.serve import ServeJobConfig, deploy
from radzero.platform.session import connect, job_runtime_env, local_ray_scope


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("serve", __doc__, ServeJobConfig)
    parser.add_argument("--detach", action="store_true", help="return once deployed")
    parser.add_argument("--log", metavar="FILE", help="run directly: Ray's output goes to FILE")
    local = not os.environ.get("RAY_ADDRESS")  # read before connecting: it may start a Ray
    args, config = parse_config(parser, ServeJobConfig, argv, "serve")
    if registry.is_reference(config.model):
        try:
            registry.resolve(
                config.model, resolve_path(config.registry) if config.registry else None
            )
        except ValueError as err:
            parser.error(f"model {config.model}: {err}")
    else:
        config.model = resolve_path(config.model)
    quiet = quiet_output(Path(args.log)) if local and args.log else contextlib.nullcontext()
    with quiet as terminal, local_ray_scope():
        out = terminal or sys.stdout
        ready = False
        try:
            config.storage.apply()
            connect()
            deploy(config, job_runtime_env())
            ready = True
            url = f"http://{config.host}:{config.port}{config.route_prefix.rstrip('/')}"
            print(f"serve: {config.model} at {url}/ (the page; API docs at {url}/docs)", file=out)
            summary = {"url": url, "model": config.model, "application": config.name}
            print(json.dumps(summary), file=out)
            if local and not args.detach:
                print("serve: Ctrl-C stops it", file=out)
                # `kill` stops it as Ctrl-C does (set after ray.init, which sets its own)
                signal.signal(signal.SIGTERM, _interrupt)
                while True:
                    time.sleep(3600)
        except KeyboardInterrupt:
            if local and ray.is_initialized():
                serve.shutdown()  # says so in the log when Serve had not started yet
            print("serve: stopped" if ready else "serve: interrupted before it served", file=out)
            return 0 if ready else 130
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
