"""deploy/kuberay/*.yaml, offline: each manifest as the Kubernetes API server and the KubeRay
v1.7.0 operator would take it (the CRD schemas of tests/data/kuberay, the operator's own
rules), the Serve config and runtime_env inside them with Ray's own checks, and what the
project needs of them: the copies of the cluster spec agree, each job runs a known `radzero`
stage on configs/paper.yaml, and the worker groups hold what that config asks for."""

from __future__ import annotations

import argparse
import functools
import json
import re
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import pytest
import yaml
from ray.runtime_env import RuntimeEnv

from radzero import cli, storage
from radzero.config import from_dict, load_config, path_fields
from radzero.platform.evaluate import EvaluateJobConfig
from radzero.platform.features import FeaturesJobConfig
from radzero.platform.preprocess import PreprocessJobConfig
from radzero.platform.train import TrainJobConfig
from radzero.platform.tune.config import TuneJobConfig
from tests.test_serve_config import SERVE_YAML, check_serve_config

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "deploy" / "kuberay"
SCHEMAS = Path(__file__).parent / "data" / "kuberay"
PAPER = ROOT / "configs" / "paper.yaml"
IMAGE = "ghcr.io/radzero/radzero:0.1.0"
IMAGE_ROOT = PurePosixPath("/home/ray/radzero")  # the Dockerfile's copy of the repository
# The `radzero` commands that run as RayJobs, with the config each reads (its jobs.<stage>).
STAGES = {
    "preprocess": PreprocessJobConfig,
    "features": FeaturesJobConfig,
    "train": TrainJobConfig,
    "tune": TuneJobConfig,
    "evaluate": EvaluateJobConfig,
}
JOB_FILES = {stage: MANIFESTS / f"{stage}.yaml" for stage in STAGES}
SERVICE_FILE = MANIFESTS / "serve.yaml"
ACCOUNT_FILE = MANIFESTS / "service-account.yaml"

# What the KubeRay v1.7.0 operator refuses beyond its CRD schemas.
NAME_LIMITS = {"RayJob": 47, "RayService": 47}
DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
SUBMISSION_MODES = {"K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"}
UPGRADE_TYPES = {"NewCluster", "None", "NewClusterWithIncrementalUpgrade"}
RAY_START_RESOURCES = ("num-cpus", "num-gpus", "memory", "resources")
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL")

MISSING = "<missing>"
# deploy/kuberay/serve.yaml's serveConfigV2 against deploy/serve.yaml: these and nothing else.
MODEL = ("applications", 0, "deployments", 0)
SERVE_EDITS = {
    ("http_options", "host"): ("127.0.0.1", "0.0.0.0"),
    (*MODEL, "user_config", "model"): ("radzero-local@best", "radzero@best"),
    (*MODEL, "user_config", "registry"): (None, "s3://radzero-data/registry"),
    (*MODEL, "ray_actor_options", "num_gpus"): (MISSING, 1),
}


def read(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


# --- the API server: the CRD's openAPIV3Schema, strict ---------------------------------------


def api_server_schema(node: Any) -> Any:
    """The schema as the API server applies it: unknown fields are errors (structural schemas
    prune them; a strict client refuses them) and a field with a default is never missing."""
    if isinstance(node, list):
        return [api_server_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: api_server_schema(value) for key, value in node.items()}
    properties = node.get("properties")
    if properties is not None and not node.get("x-kubernetes-preserve-unknown-fields"):
        out.setdefault("additionalProperties", False)
    if properties is not None and "required" in node:
        out["required"] = [n for n in node["required"] if "default" not in properties.get(n, {})]
    return out


@functools.cache
def validator(kind: str) -> jsonschema.Draft7Validator:
    schema = json.loads((SCHEMAS / f"{kind.lower()}_v1.json").read_text())
    return jsonschema.Draft7Validator(api_server_schema(schema))


def without_nulls(node: Any) -> Any:
    """What the API server keeps of a manifest: fields set to null are dropped."""
    if isinstance(node, dict):
        return {key: without_nulls(value) for key, value in node.items() if value is not None}
    if isinstance(node, list):
        return [without_nulls(item) for item in node]
    return node


def schema_problems(manifest: dict) -> list[str]:
    if manifest.get("kind") not in NAME_LIMITS:
        return [f"kind {manifest.get('kind')!r} is not one of {sorted(NAME_LIMITS)}"]
    errors = validator(manifest["kind"]).iter_errors(without_nulls(manifest))
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]


# --- the operator: rules its CRD can't express -------------------------------------------------


def cluster_spec(manifest: dict) -> dict:
    spec = manifest.get("spec", {})
    return spec.get("rayClusterSpec") or spec.get("rayClusterConfig") or {}


def groups(cluster: dict) -> Iterator[tuple[str, dict]]:
    """(name, group spec) of the head group and every worker group."""
    yield "head", cluster.get("headGroupSpec", {})
    for group in cluster.get("workerGroupSpecs", []):
        yield group.get("groupName", "?"), group


def pod_spec(group: dict) -> dict:
    return group.get("template", {}).get("spec", {})


def cluster_problems(cluster: dict) -> list[str]:
    found = []
    autoscaler_v2 = (
        cluster.get("enableInTreeAutoscaling")
        and cluster.get("autoscalerOptions", {}).get("version") == "v2"
    )
    for name, group in groups(cluster):
        containers = pod_spec(group).get("containers", [])
        if not containers:
            found.append(f"group {name}: no container")
        params = group.get("rayStartParams", {})
        if any(params.get(key) for key in RAY_START_RESOURCES) and group.get("resources"):
            found.append(f"group {name}: resources set both in rayStartParams and resources")
        if "labels" in params:
            found.append(f"group {name}: rayStartParams labels (use the labels field)")
        restart = pod_spec(group).get("restartPolicy", "Never")
        if autoscaler_v2 and restart != "Never":
            found.append(f"group {name}: restartPolicy {restart} with autoscaler v2")
        env = {item.get("name") for item in (containers[0].get("env", []) if containers else [])}
        if name == "head" and "RAY_enable_autoscaler_v2" in env and autoscaler_v2:
            found.append("head: RAY_enable_autoscaler_v2 and autoscalerOptions.version both set")
    return found


def runtime_env_problems(text: str) -> list[str]:
    """``runtimeEnvYAML``: YAML (the operator's check), then Ray's RuntimeEnv of it."""
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError as err:
        return [f"runtimeEnvYAML does not parse: {err}"]
    if not isinstance(parsed, dict):
        return [f"runtimeEnvYAML is not a mapping: {parsed!r}"]
    found = [
        f"runtimeEnvYAML: unknown field {key!r}" for key in set(parsed) - RuntimeEnv.known_fields
    ]
    try:
        RuntimeEnv(**parsed)
    except (TypeError, ValueError) as err:
        found.append(f"runtimeEnvYAML: {err}")
    return found


def serve_config_problems(text: str) -> list[str]:
    """``serveConfigV2``: a Serve config file, checked with Ray's schema and for unknown keys."""
    try:
        check_serve_config(yaml.safe_load(text))
    except (yaml.YAMLError, ValueError) as err:
        return [f"serveConfigV2: {err}"]
    return []


def operator_problems(manifest: dict) -> list[str]:
    kind, spec = manifest.get("kind"), manifest.get("spec", {})
    found = []
    if manifest.get("apiVersion") != "ray.io/v1":
        found.append(f"apiVersion {manifest.get('apiVersion')!r} refused: use ray.io/v1")
    name = manifest.get("metadata", {}).get("name", "")
    if not DNS_1035.fullmatch(name):
        found.append(f"name {name!r} is not a DNS-1035 label")
    if len(name) > NAME_LIMITS.get(kind, 0):
        found.append(f"name {name!r} is longer than {NAME_LIMITS.get(kind, 0)} characters")
    if kind == "RayJob":
        mode = spec.get("submissionMode", "K8sJobMode")
        if mode not in SUBMISSION_MODES:
            found.append(f"submissionMode {mode!r} is not one of {sorted(SUBMISSION_MODES)}")
        if not spec.get("shutdownAfterJobFinishes"):
            if spec.get("ttlSecondsAfterFinished", 0) > 0:
                found.append("ttlSecondsAfterFinished needs shutdownAfterJobFinishes: true")
            if spec.get("suspend"):
                found.append("suspend needs shutdownAfterJobFinishes: true")
        if mode == "SidecarMode" and {"submitterPodTemplate", "submitterConfig"} & set(spec):
            found.append("SidecarMode takes no submitterPodTemplate or submitterConfig")
        for field in ("activeDeadlineSeconds", "preRunningDeadlineSeconds"):
            if field in spec and spec[field] <= 0:
                found.append(f"{field} must be > 0")
        if "rayClusterSpec" not in spec and "clusterSelector" not in spec:
            found.append("neither rayClusterSpec nor clusterSelector")
        found += runtime_env_problems(spec.get("runtimeEnvYAML", ""))
    if kind == "RayService":
        upgrade = spec.get("upgradeStrategy", {}).get("type", "NewCluster")
        if upgrade not in UPGRADE_TYPES:
            found.append(f"upgradeStrategy.type {upgrade!r} is not one of {sorted(UPGRADE_TYPES)}")
        found += serve_config_problems(spec.get("serveConfigV2", ""))
    return found + cluster_problems(cluster_spec(manifest))


def problems(manifest: dict) -> list[str]:
    """Everything the API server, the operator or Ray would refuse in ``manifest``."""
    return schema_problems(manifest) + operator_problems(manifest)


# --- what the manifests are for -----------------------------------------------------------------


def manifests() -> dict[str, dict]:
    return {path.name: read(path) for path in [*JOB_FILES.values(), SERVICE_FILE]}


def containers(cluster: dict) -> Iterator[dict]:
    for _, group in groups(cluster):
        yield from pod_spec(group).get("containers", [])


def entrypoint(stage: str) -> argparse.Namespace:
    """The RayJob's command line, parsed as `radzero <stage> [--config FILE] [--set ...]`."""
    words = shlex.split(read(JOB_FILES[stage])["spec"]["entrypoint"])
    assert words[0] == "radzero", f"{stage}: the entrypoint runs {words[0]}, not radzero"
    parser = argparse.ArgumentParser(prog="radzero", exit_on_error=False)
    parser.add_argument("stage", choices=cli.COMMANDS)
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", nargs="*", default=[])
    return parser.parse_args(words[1:])


def job_config(stage: str) -> Any:
    """The config the RayJob's command reads: its --config file's jobs.<stage> and its --set,
    loaded by the stage's config class from the repository's copy of the file."""
    args = entrypoint(stage)
    in_repo = ROOT / PurePosixPath(args.config).relative_to(IMAGE_ROOT)
    return load_config(STAGES[stage], in_repo, args.set, section=stage)


def explicit_gpus(value: float | None, what: str) -> float:
    # None means "one when the cluster has GPUs": none yet when an autoscaling cluster starts.
    assert value is not None, f"{what}: set num_gpus (the GPU groups start at 0 pods)"
    return value


def train_workers(scaling: Any) -> list[dict[str, float]]:
    gpus = 1.0 if scaling.use_gpu else 0.0
    return [{"CPU": scaling.cpus_per_worker, "GPU": gpus}] * scaling.num_workers


def actor_pool(config: Any, what: str) -> list[dict[str, float]]:
    gpus = explicit_gpus(config.num_gpus, what)
    return [{"CPU": config.num_cpus, "GPU": gpus}] * config.actors


def stage_phases(stage: str, config: Any) -> list[list[dict[str, float]]]:
    """The resource bundles a stage holds at once, per phase of the job."""
    if stage == "preprocess":  # sentences first (their passes materialised), then the images
        prepare = [{"CPU": 1.0}]
        llm = config.llm
        if config.sentences != "llm" or llm.engine != "vllm":
            return [prepare]
        engine = {"CPU": 1.0, "GPU": float(llm.tensor_parallel_size)}  # TP GPUs on one node
        return [[engine] * llm.concurrency, prepare]
    if stage in ("features", "evaluate"):
        return [actor_pool(config, stage)]
    if stage == "train":
        return [train_workers(config.scaling)]
    features = from_dict(FeaturesJobConfig, config.features_job)
    trial = [{"CPU": config.trial_cpus}, *train_workers(config.base_job().scaling)]
    return [actor_pool(features, "tune features_job"), trial * config.max_concurrent_trials]


def serve_phases(serve_config: dict) -> list[list[dict[str, float]]]:
    bundles = []
    for deployment in serve_config["applications"][0]["deployments"]:
        replicas = deployment.get("autoscaling_config", {}).get("max_replicas")
        options = deployment.get("ray_actor_options", {})
        bundle = {"CPU": options.get("num_cpus", 1.0), "GPU": options.get("num_gpus", 0.0)}
        bundles += [bundle] * (replicas or deployment.get("num_replicas", 1))
    return [bundles]


def cpus(quantity: str | int) -> float:
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def worker_pods(cluster: dict, one_fewer: str | None = None) -> list[dict[str, float]]:
    """What Ray sees of each worker pod at maxReplicas (KubeRay's num-cpus and num-gpus come
    from the container's limits), with one pod fewer in group ``one_fewer``."""
    pods = []
    for group in cluster["workerGroupSpecs"]:
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        pod = {"CPU": cpus(limits["cpu"]), "GPU": float(limits.get("nvidia.com/gpu", 0))}
        pods += [pod] * (group["maxReplicas"] - (group["groupName"] == one_fewer))
    return pods


def fits(bundles: list[dict[str, float]], pods: list[dict[str, float]]) -> bool:
    """Whether first-fit, largest bundles first, places every bundle on some pod."""
    free = [dict(pod) for pod in pods]
    for bundle in sorted(bundles, key=lambda b: (b.get("GPU", 0), b.get("CPU", 0)), reverse=True):
        pod = next((p for p in free if all(p[k] >= v for k, v in bundle.items())), None)
        if pod is None:
            return False
        for key, value in bundle.items():
            pod[key] -= value
    return True


def differences(before: Any, after: Any, path: tuple = ()) -> dict[tuple, tuple]:
    """Every leaf where two parsed YAML documents differ: {path: (before, after)}."""
    if isinstance(before, dict) and isinstance(after, dict):
        found = {}
        for key in before.keys() | after.keys():
            found |= differences(before.get(key, MISSING), after.get(key, MISSING), (*path, key))
        return found
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        found = {}
        for index, (old, new) in enumerate(zip(before, after, strict=True)):
            found |= differences(old, new, (*path, index))
        return found
    return {} if before == after else {path: (before, after)}


# --- the tests ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(manifests()))
def test_each_manifest_is_taken_by_the_api_server_the_operator_and_ray(name):
    assert problems(manifests()[name]) == []


def test_there_is_one_rayjob_per_stage_and_it_cleans_up_after_itself():
    for stage, path in JOB_FILES.items():
        job = read(path)
        assert (job["kind"], job["metadata"]["name"]) == ("RayJob", f"radzero-{stage}")
        assert job["spec"]["shutdownAfterJobFinishes"] is True
        assert job["spec"]["ttlSecondsAfterFinished"] > 0
    assert read(SERVICE_FILE)["kind"] == "RayService"
    shipped = {*JOB_FILES.values(), SERVICE_FILE, ACCOUNT_FILE}
    assert set(MANIFESTS.iterdir()) == shipped, "kubectl apply -f deploy/kuberay/ takes them all"


def test_the_cluster_spec_copies_agree():
    pinned = re.search(r"^ray==(\S+)$", (ROOT / "constraints.txt").read_text(), re.M).group(1)
    account = read(ACCOUNT_FILE)["metadata"]["name"]
    clusters = {name: cluster_spec(manifest) for name, manifest in manifests().items()}
    heads = {json.dumps(c["headGroupSpec"], sort_keys=True) for c in clusters.values()}
    assert len(heads) == 1, "the head groups differ between the files"
    every_container = [item for c in clusters.values() for item in containers(c)]
    for key in ("image", "env", "volumeMounts"):
        assert len({json.dumps(item.get(key)) for item in every_container}) == 1, key
    assert every_container[0]["image"] == IMAGE
    for name, cluster in clusters.items():
        assert cluster["rayVersion"] == pinned, f"{name}: rayVersion is not constraints.txt's ray"
        assert cluster["enableInTreeAutoscaling"] is True
        assert cluster["autoscalerOptions"]["version"] == "v2"
        assert cluster["headGroupSpec"]["rayStartParams"] == {"num-cpus": "0"}
        for group_name, group in groups(cluster):
            spec = pod_spec(group)
            assert spec["serviceAccountName"] == account, f"{name} {group_name}"
            assert spec["volumes"] == pod_spec(cluster["headGroupSpec"])["volumes"]
            limits = spec["containers"][0]["resources"]["limits"]
            if group_name != "head":  # Ray's resources come from the container's limits
                assert "rayStartParams" not in group, f"{name} {group_name}"
                gpu_group = group_name == "gpu"
                assert (limits.get("nvidia.com/gpu", 0) > 0) == gpu_group, f"{name} {group_name}"
                assert (spec.get("tolerations") is not None) == gpu_group, f"{name} {group_name}"


def test_s3_access_is_the_irsa_service_account_and_no_keys():
    account = read(ACCOUNT_FILE)
    assert (account["apiVersion"], account["kind"]) == ("v1", "ServiceAccount")
    arn = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@/-]+", arn)
    for path in MANIFESTS.iterdir():
        keys = re.search(
            r"AKIA[0-9A-Z]{16}|AWS_SECRET_ACCESS_KEY|AWS_SESSION_TOKEN", path.read_text()
        )
        assert keys is None, f"{path.name}: {keys}"
    for name, manifest in manifests().items():
        for item in containers(cluster_spec(manifest)):
            for variable in item.get("env", []):
                if SECRET_NAME.search(variable["name"]):
                    assert "secretKeyRef" in variable["valueFrom"], f"{name}: {variable['name']}"
        runtime_env = yaml.safe_load(manifest["spec"].get("runtimeEnvYAML", "{}"))
        # runtime_env variables show in the dashboard and the submitter's command line
        assert not [key for key in runtime_env.get("env_vars", {}) if SECRET_NAME.search(key)]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_each_job_runs_its_radzero_stage_on_a_config_of_the_image(stage):
    args = entrypoint(stage)
    assert args.stage == stage
    config_path = PurePosixPath(args.config)
    assert config_path.is_relative_to(IMAGE_ROOT), f"{args.config} is not in the image's copy"
    assert ROOT / config_path.relative_to(IMAGE_ROOT) == PAPER, "not the paper's setup"
    config = job_config(stage)  # every --set key and value is one the stage's config accepts
    for field in path_fields(config):  # a pod's own disk is gone with the cluster
        value = getattr(config, field)
        for uri in value if isinstance(value, list) else [value]:
            assert uri is None or storage.is_s3(uri), f"{stage}: {field} {uri!r} is not on S3"


def test_evaluate_scores_the_train_jobs_model():
    train, evaluate = job_config("train"), job_config("evaluate")
    assert evaluate.model == storage.join(train.storage_path, train.name, "model")
    assert evaluate.benchmark and evaluate.root


@pytest.mark.parametrize("name", sorted(manifests()))
def test_the_worker_groups_hold_what_the_config_asks_for_and_no_more_gpus(name):
    manifest = manifests()[name]
    cluster = cluster_spec(manifest)
    if manifest["kind"] == "RayService":
        phases = serve_phases(yaml.safe_load(manifest["spec"]["serveConfigV2"]))
    else:
        stage = manifest["metadata"]["name"].removeprefix("radzero-")
        phases = stage_phases(stage, job_config(stage))
    assert all(fits(phase, worker_pods(cluster)) for phase in phases)
    fewer = worker_pods(cluster, one_fewer="gpu")  # a GPU pod fewer: some phase must not fit
    assert not all(fits(phase, fewer) for phase in phases), f"{name}: GPUs that nothing uses"


def test_the_served_config_is_deploy_serve_yaml_with_the_marked_edits():
    service = read(SERVICE_FILE)["spec"]["serveConfigV2"]
    assert differences(read(SERVE_YAML), yaml.safe_load(service)) == SERVE_EDITS
    assert service.count("# kuberay:") == len(SERVE_EDITS)
    tune = job_config("tune")
    user_config = yaml.safe_load(service)["applications"][0]["deployments"][0]["user_config"]
    assert user_config["model"] == f"{tune.register.name}@best"
    assert user_config["registry"] == tune.registry


def _set(path: tuple, value: Any) -> Callable[[dict], None]:
    def edit(manifest: dict) -> None:
        node = manifest
        for key in path[:-1]:
            node = node[key]
        if value is MISSING:
            del node[path[-1]]
        else:
            node[path[-1]] = value

    return edit


def _serve_key(manifest: dict) -> None:
    config = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    config["applications"][0]["deployments"][0]["max_ongoing_request"] = 16
    manifest["spec"]["serveConfigV2"] = yaml.safe_dump(config)


def _serve_value(manifest: dict) -> None:
    config = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    config["applications"][0]["deployments"][0]["max_ongoing_requests"] = 0
    manifest["spec"]["serveConfigV2"] = yaml.safe_dump(config)


def _sidecar(manifest: dict) -> None:
    spec = manifest["spec"]
    spec["submissionMode"] = "SidecarMode"
    spec["submitterPodTemplate"] = {"spec": {"containers": [{"name": "s", "image": IMAGE}]}}
    del spec["submitterConfig"]


def _in_cluster(path: tuple, value: Any) -> Callable[[dict], None]:
    return lambda manifest: _set(path, value)(cluster_spec(manifest))


def _resources_twice(manifest: dict) -> None:
    worker = cluster_spec(manifest)["workerGroupSpecs"][0]
    worker["rayStartParams"] = {"num-gpus": "4"}
    worker["resources"] = {"GPU": "4"}


def _autoscaler_env(manifest: dict) -> None:
    head = pod_spec(cluster_spec(manifest)["headGroupSpec"])["containers"][0]
    head["env"].append({"name": "RAY_enable_autoscaler_v2", "value": "1"})


WORKER = ("workerGroupSpecs", 0)
CONTAINER = (*WORKER, "template", "spec", "containers", 0)
BROKEN = {
    "unknown spec field": ("train", _set(("spec", "entrypont"), "x"), "'entrypont' was unexpected"),
    "unknown container field": (
        "train",
        _in_cluster((*CONTAINER, "imagePullPolicyy"), "Always"),
        "'imagePullPolicyy' was unexpected",
    ),
    "wrong type": ("train", _in_cluster((*WORKER, "maxReplicas"), "1"), "is not of type 'integer'"),
    "required field missing": (
        "train",
        _in_cluster((*WORKER, "groupName"), MISSING),
        "'groupName' is a required property",
    ),
    "name too long": ("train", _set(("metadata", "name"), "r" * 48), "longer than 47"),
    "name not DNS-1035": ("train", _set(("metadata", "name"), "radzero_train"), "DNS-1035"),
    "v1alpha1": ("train", _set(("apiVersion",), "ray.io/v1alpha1"), "refused"),
    "ttl without shutdown": (
        "train",
        _set(("spec", "shutdownAfterJobFinishes"), False),
        "needs shutdownAfterJobFinishes",
    ),
    "bad submissionMode": ("train", _set(("spec", "submissionMode"), "K8sMode"), "submissionMode"),
    "sidecar with a submitter template": ("train", _sidecar, "SidecarMode takes no"),
    "runtimeEnvYAML does not parse": (
        "train",
        _set(("spec", "runtimeEnvYAML"), "env_vars: {HF_HUB_OFFLINE: [1"),
        "does not parse",
    ),
    "runtimeEnvYAML refused by Ray": (
        "train",
        _set(("spec", "runtimeEnvYAML"), "env_vars: {HF_HUB_OFFLINE: 1}"),
        "must be of type Dict[str, str]",
    ),
    "runtimeEnvYAML unknown field": (
        "train",
        _set(("spec", "runtimeEnvYAML"), "envvars: {A: b}"),
        "unknown field 'envvars'",
    ),
    "resources twice": ("train", _resources_twice, "both in rayStartParams and resources"),
    "suspend without shutdown": (
        "train",
        lambda m: m["spec"].update(suspend=True, shutdownAfterJobFinishes=False),
        "suspend needs shutdownAfterJobFinishes",
    ),
    "deadline 0": ("train", _set(("spec", "activeDeadlineSeconds"), 0), "must be > 0"),
    "no cluster": ("train", _set(("spec", "rayClusterSpec"), MISSING), "neither rayClusterSpec"),
    "no container": (
        "train",
        _in_cluster((*WORKER, "template", "spec", "containers"), []),
        "group gpu: no container",
    ),
    "rayStartParams labels": (
        "train",
        _in_cluster((*WORKER, "rayStartParams"), {"labels": "a=b"}),
        "use the labels field",
    ),
    "autoscaler v2 twice": ("train", _autoscaler_env, "RAY_enable_autoscaler_v2 and"),
    "restartPolicy with autoscaler v2": (
        "train",
        _in_cluster(("headGroupSpec", "template", "spec", "restartPolicy"), "Always"),
        "restartPolicy Always",
    ),
    "serveConfigV2 with a bad key": ("serve", _serve_key, "key(s): max_ongoing_request"),
    "serveConfigV2 with a bad value": ("serve", _serve_value, "greater than 0"),
    "bad upgradeStrategy": (
        "serve",
        _set(("spec", "upgradeStrategy", "type"), "Rolling"),
        "upgradeStrategy.type",
    ),
}


@pytest.mark.parametrize("broken", sorted(BROKEN))
def test_a_broken_manifest_is_refused_with_the_reason(broken):
    stage, edit, reason = BROKEN[broken]
    manifest = read(MANIFESTS / f"{stage}.yaml")
    assert problems(manifest) == []
    edit(manifest)
    found = problems(manifest)
    assert any(reason in problem for problem in found), found


def test_nulls_are_dropped_before_the_schema_as_the_api_server_does():
    manifest = read(JOB_FILES["train"])
    manifest["spec"]["suspend"] = None
    assert problems(manifest) == []
