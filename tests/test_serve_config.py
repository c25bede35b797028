"""The serving stage's config and its Serve config files, offline: ServeJobConfig's checks,
deploy/serve.yaml against what `serve build` writes today, and Ray's own schema."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from radzero.config import from_dict
from radzero.platform.serve.config import ServeJobConfig

ROOT = Path(__file__).resolve().parents[1]
SERVE_YAML = ROOT / "deploy" / "serve.yaml"
# The only differences from `serve build radzero.platform.serve:app` (marked in the file).
EDITS = {
    ("applications", 0, "name"): ("app1", "radzero"),
    ("http_options", "host"): (None, "127.0.0.1"),
    ("http_options", "request_timeout_s"): (None, 60.0),
}


def _get(data, path):
    for key in path:
        data = data[key]
    return data


def _set(data, path, value):
    for key in path[:-1]:
        data = data[key]
    data[path[-1]] = value


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("build") / "serve.yaml"
    serve = Path(sys.executable).with_name("serve")
    subprocess.run(
        [str(serve), "build", "radzero.platform.serve:app", "-o", str(out)],
        check=True,
        capture_output=True,
        cwd=ROOT,
        timeout=180,
    )
    return yaml.safe_load(out.read_text())


def test_the_file_is_serve_builds_output_with_only_the_marked_edits(built):
    shipped = yaml.safe_load(SERVE_YAML.read_text())
    for path, (before, after) in EDITS.items():
        if before is not None:
            assert _get(built, path) == before, f"serve build no longer writes {path}={before}"
        assert _get(shipped, path) == after
        _set(built, path, after)
    assert shipped == built, "deploy/serve.yaml differs from `serve build`: regenerate it"


def check_serve_config(config: dict) -> None:
    """Ray's schema for a Serve config file, and the unknown keys it ignores: ValueError."""
    from ray.serve.schema import (
        DeploymentSchema,
        ServeApplicationSchema,
        ServeDeploySchema,
    )

    ServeDeploySchema.model_validate(config)  # pydantic's ValidationError is a ValueError
    unknown = set(config) - set(ServeDeploySchema.model_fields)
    for application in config["applications"]:
        unknown |= set(application) - set(ServeApplicationSchema.model_fields)
        for deployment in application["deployments"]:
            unknown |= set(deployment) - set(DeploymentSchema.model_fields)
    if unknown:
        raise ValueError(f"unknown Serve config key(s): {', '.join(sorted(unknown))}")


def test_the_file_passes_rays_schema_without_unknown_keys():
    check_serve_config(yaml.safe_load(SERVE_YAML.read_text()))


def test_serve_config_spells_out_the_same_deployments_as_the_file():
    from ray.serve.schema import ServeDeploySchema

    from radzero.platform.serve import serve_config

    written = serve_config(ServeJobConfig(), {"env_vars": {"KEY": "value"}})
    ServeDeploySchema.model_validate(written)
    shipped = yaml.safe_load(SERVE_YAML.read_text())
    ours, theirs = written["applications"][0], shipped["applications"][0]
    assert ours["deployments"] == theirs["deployments"]
    assert ours["import_path"] == theirs["import_path"] and ours["name"] == theirs["name"]
    assert ours["runtime_env"] == {"env_vars": {"KEY": "value"}}
    assert written["http_options"] == shipped["http_options"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"batching": {"max_batch_size": 32}}, "max_ongoing_requests (16) must be >= "),
        ({"autoscaling": {"min_replicas": 3, "max_replicas": 2}}, "min_replicas <= max_replicas"),
        ({"limits": {"max_phrases": 0}}, "max_phrases and max_phrase_chars must be >= 1"),
        ({"threshold": 1.5}, "threshold must be in [0, 1]"),
        ({"route_prefix": "api"}, "must start with '/'"),
        ({"max_queued_requests": 0}, "max_queued_requests must be >= 1"),
        ({"batchng": {}}, "did you mean 'batching'"),
        ({"port": "eighty"}, "port"),
    ],
)
def test_a_bad_serve_config_is_refused_with_the_reason(data, message):
    with pytest.raises(ValueError) as error:
        from_dict(ServeJobConfig, data)
    assert message in str(error.value)
