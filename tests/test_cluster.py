"""cluster.yaml (docs/cloud.md), checked offline with Ray's and botocore's own code: Ray's schema
and checks as `ray up` runs them, every node type's node_config against EC2's RunInstances
model, the resources Ray fills in per instance type against what configs/paper.yaml's jobs ask,
and (slow) the whole AWS bootstrap inside moto."""

from __future__ import annotations

import copy
import functools
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import jsonschema
import pytest
import yaml
from botocore.validate import ParamValidator
from moto import mock_aws
from ray.autoscaler._private.aws import node_provider
from ray.autoscaler._private.node_provider_availability_tracker import NodeAvailabilitySummary
from ray.autoscaler._private.resource_demand_scheduler import (
    _default_utilization_scorer,
    get_nodes_for,
)
from ray.autoscaler._private.util import prepare_config, validate_config

from radzero.config import load_config
from radzero.platform.features import FeaturesJobConfig
from radzero.platform.preprocess import PreprocessJobConfig
from radzero.platform.serve.config import ServeJobConfig
from radzero.platform.train import TrainJobConfig
from radzero.platform.train.config import ScalingSection
from radzero.platform.tune.config import TuneJobConfig

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster.yaml"
PAPER = ROOT / "configs" / "paper.yaml"
CLOUD_DOC = ROOT / "docs" / "cloud.md"
SETUP_KEYS = ("setup_commands", "head_setup_commands", "worker_setup_commands")
# bf16 weights of the LLMs configs/paper.yaml may name: 2 bytes per parameter.
LLM_WEIGHT_BYTES = {"meta-llama/Llama-3.3-70B-Instruct": 2 * 70.6e9}
VLLM_GPU_MEMORY_UTILIZATION = 0.9  # vLLM's default share of each GPU's memory

Resources = dict[str, float]


@pytest.fixture
def cluster() -> dict[str, Any]:
    return yaml.safe_load(CLUSTER.read_text())


def ray_up_checks(config: dict[str, Any]) -> dict[str, Any]:
    """What `ray up` does before it touches a cloud: fill Ray's defaults, then validate."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_ray_accepts_the_cluster(cluster) -> None:
    prepared = ray_up_checks(cluster)
    types = prepared["available_node_types"]
    assert prepared["head_node_type"] == "head"
    assert types["head"]["resources"] == {"CPU": 0}
    assert {name: types[name]["min_workers"] for name in types if name != "head"} == {
        "gpu_train": 0,
        "gpu_serve": 0,
        "cpu": 0,
        "gpu_llm": 0,
    }
    assert prepared["idle_timeout_minutes"] > 0
    # Set in the file, so Ray's defaults (a nightly wheel) never apply; nothing installs on start.
    assert all(key in cluster for key in SETUP_KEYS)
    commands = [c for key in SETUP_KEYS for c in prepared[key]]
    assert not [c for c in commands if "pip" in c or "ray-wheels" in c]
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert prepared["docker"]["image"] == f"ghcr.io/radzero/radzero:{version}"
    for name, node_type in types.items():
        node_config = node_type["node_config"]
        assert "IamInstanceProfile" in node_config, name  # S3 on the head and every worker
        assert node_config["ImageId"].startswith(("ami-", "resolve:ssm:/aws/service/deeplearning"))
        gpu_type = name.startswith("gpu_")  # the resources test checks which types have GPUs
        assert node_type.get("docker", {}).get("worker_run_options") == (
            ["--gpus all"] if gpu_type else None
        ), name


def _rename(section: Callable[[dict], dict], old: str, new: str) -> Callable[[dict], None]:
    def mutate(config: dict) -> None:
        part = section(config)
        part[new] = part.pop(old)

    return mutate


def _drop(section: Callable[[dict], dict], key: str) -> Callable[[dict], None]:
    return lambda config: section(config).pop(key)


def _set(section: Callable[[dict], dict], key: str, value: Any) -> Callable[[dict], None]:
    return lambda config: section(config).__setitem__(key, value)


def _min_workers_above_max_workers(config: dict) -> None:
    config["available_node_types"]["cpu"]["min_workers"] = 2
    config["max_workers"] = 1


def _top(config: dict) -> dict:
    return config


def _train(config: dict) -> dict:
    return config["available_node_types"]["gpu_train"]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (_rename(_top, "idle_timeout_minutes", "idle_timeout_minute"), "'idle_timeout_minute'"),
        (_rename(_top, "setup_commands", "setup_command"), "'setup_command' was unexpected"),
        (_drop(_train, "resources"), "'resources' is a required property"),
        (_rename(_train, "max_workers", "max_worker"), "'max_worker' was unexpected"),
        (_set(_train, "resources", {"GPU": 0.5}), "0.5 is not of type 'integer'"),
        (_rename(lambda c: c["docker"], "run_options", "run_option"), "'run_option'"),
        (_set(_train, "docker", {"run_options": ["--gpus all"]}), "'run_options' was unexpected"),
        (_set(_top, "head_node_type", "heads"), "must be one of `available_node_types`"),
        (_min_workers_above_max_workers, "smaller than the sum of `min_workers`"),
    ],
    ids=[
        "top-level key",
        "setup key",
        "no resources",
        "node type key",
        "fractional resource",
        "docker key",
        "node docker key",
        "head type",
        "max below min",
    ],
)
def test_ray_refuses_typos(cluster, mutate, message) -> None:
    mutate(cluster)
    with pytest.raises((ValueError, jsonschema.ValidationError), match=message):
        ray_up_checks(cluster)


@pytest.fixture(scope="module")
def run_instances_shape():
    model = botocore.session.get_session().get_service_model("ec2")
    return model.operation_model("RunInstances").input_shape


def run_instances_errors(node_config: dict[str, Any], shape) -> str:
    """botocore's report on the RunInstances request of one node (Ray adds the counts)."""
    request = dict(node_config, MinCount=1, MaxCount=1)
    return ParamValidator().validate(request, shape).generate_report()


def test_node_configs_are_valid_run_instances_requests(cluster, run_instances_shape) -> None:
    for name, node_type in cluster["available_node_types"].items():
        assert run_instances_errors(node_type["node_config"], run_instances_shape) == "", name
    misspelt = dict(cluster["available_node_types"]["gpu_train"]["node_config"])
    misspelt["IamInstanceProfil"] = misspelt.pop("IamInstanceProfile")
    assert 'Unknown parameter in input: "IamInstanceProfil"' in run_instances_errors(
        misspelt, run_instances_shape
    )


@pytest.fixture
def fake_aws(monkeypatch, tmp_path) -> Iterator[None]:
    """moto's EC2 and IAM, fake credentials, no instance metadata; ~/.ssh under tmp_path."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "HOME": str(tmp_path),
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        yield


def instance_types(config: dict[str, Any]) -> list[dict[str, Any]]:
    """EC2's description (moto's copy) of every instance type the config names."""
    names = sorted(
        {t["node_config"]["InstanceType"] for t in config["available_node_types"].values()}
    )
    ec2 = boto3.client("ec2", region_name=config["provider"]["region"])
    return ec2.describe_instance_types(InstanceTypes=names)["InstanceTypes"]


def filled_resources(config: dict[str, Any], monkeypatch) -> dict[str, Resources]:
    """The resources Ray gives each node type at `ray up`: its AWS provider's fill-in from the
    instance types (asked only for these types here, not the region's whole list)."""
    described = instance_types(config)
    monkeypatch.setattr(node_provider, "list_ec2_instances", lambda *args, **kwargs: described)
    filled = node_provider.AWSNodeProvider.fillout_available_node_types_resources(config)
    return {name: t["resources"] for name, t in filled["available_node_types"].items()}


def gpu_memory_bytes(config: dict[str, Any], node_type: str) -> float:
    instance_type = config["available_node_types"][node_type]["node_config"]["InstanceType"]
    (described,) = [t for t in instance_types(config) if t["InstanceType"] == instance_type]
    return described["GpuInfo"]["TotalGpuMemoryInMiB"] * 2**20


def nodes_launched_for(
    resources: dict[str, Resources], config: dict[str, Any], demands: list[Resources]
) -> tuple[dict[str, int], list[Resources]]:
    """The worker nodes Ray's autoscaler starts, from zero, for ``demands`` (a PACK placement
    group's bundles count as separate demands, as it flattens them), and what no node type it
    may add can hold."""
    node_types = {
        name: dict(node_type, resources=resources[name])
        for name, node_type in config["available_node_types"].items()
    }
    scorer = functools.partial(
        _default_utilization_scorer,
        node_availability_summary=NodeAvailabilitySummary(node_availabilities={}),
    )
    head = config["head_node_type"]
    launched, left = get_nodes_for(
        node_types, {head: 1}, head, config["max_workers"], demands, scorer
    )
    return dict(launched), left


def train_workers(scaling: ScalingSection) -> list[Resources]:
    """Ray Train's worker bundles (its controller takes no CPU)."""
    bundle = {"CPU": scaling.cpus_per_worker, "GPU": 1.0 if scaling.use_gpu else 0.0}
    return [bundle] * scaling.num_workers


def paper(cls, section: str):
    return load_config(cls, PAPER, section=section)


@pytest.mark.usefixtures("fake_aws")
def test_each_paper_job_brings_up_its_node_type(cluster, monkeypatch) -> None:
    resources = filled_resources(cluster, monkeypatch)
    assert resources["head"] == {"CPU": 0}  # no work on the head
    gpus = {name: r.get("GPU", 0) for name, r in resources.items()}
    assert gpus == {"head": 0, "gpu_train": 4, "gpu_serve": 1, "cpu": 0, "gpu_llm": 4}

    def launched(demands: list[Resources]) -> dict[str, int]:
        nodes, left = nodes_launched_for(resources, cluster, demands)
        assert left == [], f"no node type holds {left}"
        return nodes

    train = paper(TrainJobConfig, "train")
    assert train.scaling.use_gpu
    assert launched(train_workers(train.scaling)) == {"gpu_train": 1}

    tune = paper(TuneJobConfig, "tune")
    trials = tune.max_concurrent_trials
    trial = [*train_workers(tune.base_job().scaling), {"CPU": tune.trial_cpus}]
    assert launched(trial * trials) == {"gpu_train": trials}

    # GPUs asked for explicitly: unset, a job sees no GPUs while the GPU types are at zero.
    features = paper(FeaturesJobConfig, "features")
    assert features.num_gpus == 1 and tune.evaluate_gpus == 1
    actor = {"CPU": features.num_cpus, "GPU": features.num_gpus}
    assert launched([actor] * features.actors) == {"gpu_train": 1}

    # Preprocessing's map tasks take one CPU each (Ray Data's default) and no GPU.
    assert launched([{"CPU": 1.0}] * 64) == {"cpu": 2}

    serve = paper(ServeJobConfig, "serve")
    assert serve.model_gpus == 1
    replica = {"CPU": serve.model_cpus, "GPU": serve.model_gpus}
    replicas = [replica] * serve.autoscaling.max_replicas
    ingress = [{"CPU": serve.ingress_cpus}] * serve.ingress_replicas
    assert launched(replicas + ingress) == {"gpu_serve": serve.autoscaling.max_replicas}

    # The check can fail: without the 4-GPU types, nothing holds a training worker.
    small = copy.deepcopy(cluster)
    del small["available_node_types"]["gpu_llm"]
    small["available_node_types"]["gpu_train"]["node_config"]["InstanceType"] = "g5.xlarge"
    small_resources = filled_resources(small, monkeypatch)
    nodes, left = nodes_launched_for(small_resources, small, train_workers(train.scaling))
    assert nodes == {} and len(left) == train.scaling.num_workers


@pytest.mark.usefixtures("fake_aws")
def test_the_llm_engine_lands_on_a_node_that_holds_its_weights(cluster, monkeypatch) -> None:
    llm = paper(PreprocessJobConfig, "preprocess").llm
    assert llm is not None and llm.engine == "vllm" and llm.accelerator_type == "L40S"
    assert "`llm.accelerator_type: L40S`" in CLOUD_DOC.read_text()  # and the docs say why
    # Ray Data's vLLM stage: per engine a placement group of tensor_parallel_size bundles of
    # one GPU and one CPU, plus a sliver of the accelerator_type label when one is named.
    bundle = {"GPU": 1.0, "CPU": 1.0, f"accelerator_type:{llm.accelerator_type}": 0.001}
    resources = filled_resources(cluster, monkeypatch)
    demands = [bundle] * llm.tensor_parallel_size * llm.concurrency
    assert nodes_launched_for(resources, cluster, demands) == ({"gpu_llm": llm.concurrency}, [])
    weights = LLM_WEIGHT_BYTES[llm.model_source]
    assert VLLM_GPU_MEMORY_UTILIZATION * gpu_memory_bytes(cluster, "gpu_llm") > weights
    assert gpu_memory_bytes(cluster, "gpu_train") < weights  # why the LLM has its own type


@pytest.mark.slow
@pytest.mark.usefixtures("fake_aws")
def test_the_aws_bootstrap_runs_offline(cluster, run_instances_shape, tmp_path) -> None:
    from ray.autoscaler.sdk import bootstrap_config

    config = bootstrap_config(copy.deepcopy(cluster), no_config_cache=True)
    types = config["available_node_types"]
    gpus = {name: t["resources"].get("GPU", 0) for name, t in types.items()}
    assert gpus == {"head": 0, "gpu_train": 4, "gpu_serve": 1, "cpu": 0, "gpu_llm": 4}
    assert types["head"]["resources"] == {"CPU": 0}
    assert types["cpu"]["resources"]["CPU"] == 32
    assert config["auth"]["ssh_private_key"].startswith(str(tmp_path))  # the key pair it made
    for name, node_type in types.items():
        node_config = node_type["node_config"]
        assert node_config["KeyName"] == "ray-autoscaler_us-east-1", name
        assert node_config["SubnetIds"] and node_config["SecurityGroupIds"], name
        assert (
            node_config["IamInstanceProfile"]
            == cluster["available_node_types"][name]["node_config"]["IamInstanceProfile"]
        ), name
        # The request Ray sends to launch a node of this type (node_provider._create_node).
        request = dict(node_config, SubnetId=node_config["SubnetIds"][0])
        del request["SubnetIds"]
        assert run_instances_errors(request, run_instances_shape) == "", name
    assert config["head_node"] == {}  # the head's profile is ours, not Ray's default role
