"""Ray Tune sweeps of Ray Train runs on phantom tokens: the config's errors, a grid whose driver
is killed and resumed, ASHA stopping a hopeless trial, an errored trial, the registered winner."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from radzero import registry
from radzero.config import deep_merge, from_dict, to_dict
from radzero.model import PreprocessConfig, RadZero
from radzero.platform.evaluate import EvaluateJobConfig, evaluate
from radzero.platform.tune import TuneJobConfig, sweep
from radzero.platform.tune.space import grid_points, parse_space
from tests.conftest import TINY_VISION

STEPS_PER_EPOCH = 6  # 45 training phantoms on one worker in batches of 8
EPOCHS = 2
TRAIN_ACTORS = ("RayTrainWorker", "TrainController")  # what a Train run leaves when not ended


def _config(data: str, out: Path | str, **overrides) -> TuneJobConfig:
    base = {
        "name": "tiny-sweep",
        "out": str(out),
        "data": data,
        "benchmark_root": str(Path(data).parent / "raw"),
        "registry": str(Path(out) / "registry"),
        "train": {
            "model_overrides": {
                "vision": dict(TINY_VISION),
                "align": {"layers": 1, "heads": 2},
                "text": {"trainable": False},
            },
            "optim": {"epochs": EPOCHS, "batch_size": 8, "lr": 3e-3, "warmup_steps": 2},
            "scaling": {"num_workers": 1, "cpus_per_worker": 0.25},
            "checkpoint": {"keep": 1},
        },
        "space": {"similarity": ["cos", "dot"], "multi_positive": [True, False]},
        "features_job": {"batch_size": 16},
        "register": {"name": "tiny"},
    }
    base["space"] = overrides.pop("space", base["space"])  # a space replaces the default one
    return from_dict(TuneJobConfig, deep_merge(base, overrides))


# -- the config, before any Ray work ---------------------------------------------------------


@pytest.mark.parametrize(
    ("space", "message"),
    [
        (
            {"simlarity": ["cos"]},
            r"unknown sweep dimension 'simlarity' \(did you mean 'similarity'",
        ),
        ({"similarity": []}, r"space.similarity: an empty list leaves nothing to try"),
        ({"lr": {"uniform": [0.1, 0.01]}}, r"space.lr.uniform: low 0.1 is greater than high 0.01"),
        ({"lr": {"loguniform": [0.0, 0.01]}}, r"loguniform: low must be > 0"),
        ({"align_layers": {"uniform": [0, 4]}}, r"int values take a value or a list"),
        (
            {"resolution": [64, 72]},
            r"space.resolution=72: .*72 is not a multiple of .* patch size 16",
        ),
        (
            {"similarity": ["cos", "l2"]},
            r"space.similarity=l2: .*similarity must be one of \('cos', 'dot'\), got 'l2'",
        ),
        ({"align_layers": [2, -1]}, r"space.align_layers=-1: .*align.layers must be >= 0"),
        ({"temperature": [0.0]}, r"space.temperature=0.0: .*temperature.init must be > 0"),
        ({"lr": [-1e-3]}, r"space.lr=-0.001: .*lr.*must be >= 0"),
        ({"batch_size": [1]}, r"space.batch_size=1: .*at least 2 images"),
        ({"align_variant": ["local"]}, r"must be one of global, token, window"),
        ({"multi_positive": ["yes"]}, r"space.multi_positive\[0\] must be bool, got 'yes'"),
    ],
)
def test_a_bad_space_is_one_clear_error_at_load(space, message, tmp_path) -> None:
    with pytest.raises(ValueError, match=message):
        _config("unused", tmp_path, space=space, train={"optim": {"batch_size": 8}})


def test_other_bad_sweep_configs_are_refused_at_load(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"a range has no grid; .* use mode: search"):
        _config("unused", tmp_path, space={"lr": {"uniform": [0.0, 0.01]}})
    with pytest.raises(ValueError, match=r"train.name is set by the sweep"):
        _config("unused", tmp_path, train={"name": "mine"})
    with pytest.raises(ValueError, match=r"unknown config key\(s\) train.optim.epoch\b"):
        _config("unused", tmp_path, train={"optim": {"epoch": 3}})
    with pytest.raises(ValueError, match=r"a preset is a grid; set mode: grid"):
        _config("unused", tmp_path, mode="search", preset="paper-ablation", space={})
    with pytest.raises(ValueError, match=r"'paper-ablation' sets multi_positive, similarity"):
        _config("unused", tmp_path, preset="paper-ablation")
    with pytest.raises(ValueError, match=r"search.points\[0\].lr = 0.5 is outside the space"):
        _config(
            "unused",
            tmp_path,
            mode="search",
            space={"lr": {"uniform": [0.0, 0.01]}},
            search={"points": [{"lr": 0.5}]},
        )
    with pytest.raises(
        ValueError, match=r"search.points\[0\] must name exactly .*missing \['lr'\]"
    ):
        _config(
            "unused",
            tmp_path,
            mode="search",
            space={"lr": {"uniform": [0.0, 0.01]}, "similarity": ["cos", "dot"]},
            search={"points": [{"similarity": "cos"}]},
        )


def test_the_paper_preset_is_the_seeds_rows_at_each_resolution() -> None:
    points = grid_points(parse_space({"resolution": [224, 518]}), "paper-ablation")
    rows = [(p["row"], p["similarity"], p["align_layers"], p["multi_positive"]) for p in points]
    assert rows[::2] == [
        ("(a)", "dot", 0, False),
        ("(b)", "cos", 0, False),
        ("(c)", "cos", 2, False),
        ("(d)", "cos", 2, True),
    ]
    assert [p["resolution"] for p in points] == [224, 518] * 4
    assert points[-1]["row"] == "RadZero"  # the seed's name for (d) at the high resolution
    assert len(grid_points(parse_space({"lr": [1e-3, 1e-4]}), "paper-ablation")) == 8
    some = grid_points(parse_space({"resolution": [224]}), "paper-ablation", ["(d)", "(a)"])
    assert [p["row"] for p in some] == ["(a)", "(d)"]  # the preset's order


def test_rows_must_be_the_presets(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"config rows: \['\(e\)'\] not among .*'\(a\)'"):
        _config("unused", tmp_path, preset="paper-ablation", space={}, rows=["(a)", "(e)"])
    with pytest.raises(ValueError, match=r"config rows: none not among"):
        _config("unused", tmp_path, preset="paper-ablation", space={}, rows=[])
    with pytest.raises(ValueError, match=r"config rows: rows are a preset's; set preset too"):
        _config("unused", tmp_path, space={}, rows=["(a)"])


def test_the_shipped_configs_have_valid_tune_sections() -> None:
    from radzero.config import load_config

    root = Path(__file__).parent.parent
    local = load_config(TuneJobConfig, root / "configs/local.yaml", section="tune")
    assert local.preset == "paper-ablation" and len(local.points()) == 8
    assert local.resolutions() == [112, 224]
    paper = load_config(TuneJobConfig, root / "configs/paper.yaml", section="tune")
    assert paper.resolutions() == [224, 518] and paper.base_job().scaling.use_gpu


# -- sweeps on a local Ray --------------------------------------------------------------------


@pytest.fixture(scope="module")
def data(phantom_tokens) -> str:
    return phantom_tokens


_DRIVER = """
import json, sys, time
from pathlib import Path
from radzero.config import from_dict
from radzero.platform.session import connect
from radzero.platform.tune import TuneJobConfig, sweep

steps, held_after = Path(sys.argv[2]), int(sys.argv[3])  # read here: workers have other argv

def record(point, step, rank):
    with open(steps / f"{point['similarity']}-{point['multi_positive']}.txt", "a") as out:
        out.write(f"{step}\\n")
    if step > held_after and (steps / "hold").exists():
        time.sleep(3600)  # holds the trial in its second epoch until the driver is killed

connect()
sweep(from_dict(TuneJobConfig, json.loads(sys.argv[1])), on_step=record)
"""


def _steps(folder: Path) -> dict[str, list[int]]:
    return {p.stem: [int(s) for s in p.read_text().split()] for p in sorted(folder.glob("*.txt"))}


def _midway(run: Path) -> bool:
    """Whether a trial's Train run has registered a checkpoint but not trained every epoch."""
    snapshot, history = run / "checkpoint_manager_snapshot.json", run / "history.json"
    if not (snapshot.exists() and history.exists()):
        return False
    try:  # either file may be mid-write
        registered = re.search(r"checkpoint_\d{4}-", snapshot.read_text())
        return bool(registered) and len(json.loads(history.read_text())) < EPOCHS
    except (OSError, json.JSONDecodeError):
        return False


@pytest.mark.slow
def test_a_grid_resumes_after_its_driver_is_killed_and_registers_its_winner(
    data, tmp_path, monkeypatch
) -> None:
    """2 x 2 trials, two at a time. Once the first two finished, the other two are held in
    their second epoch and the driver is killed; the same command again trains only what was
    left, from the last checkpoints, then scores every trial, writes the ablation files, logs
    to MLflow and registers the winner."""
    import ray
    from ray.util.state import list_actors

    out, steps = tmp_path / "sweep", tmp_path / "steps"
    steps.mkdir()
    config = _config(data, out, tracking={"mlflow_uri": "local"})
    arguments = [json.dumps(to_dict(config)), str(steps), str(STEPS_PER_EPOCH)]
    command = [sys.executable, "-c", _DRIVER, *arguments]
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    earlier = {a.actor_id for a in list_actors(filters=[("state", "=", "ALIVE")])}
    driver = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    trials = out / "trials"
    try:
        deadline = time.monotonic() + 400
        while (
            len(finished := {r.name for r in trials.glob("*") if (r / "summary.json").exists()}) < 2
        ):
            assert driver.poll() is None, "the first driver ended before two trials finished"
            assert time.monotonic() < deadline, "two trials did not finish within 400 s"
            time.sleep(0.2)
        (steps / "hold").touch()  # the next two trials stop in their second epoch
        while len(saved := {r.name for r in trials.glob("*") if _midway(r)}) < 2:
            assert driver.poll() is None, "the first driver ended before it was killed"
            assert time.monotonic() < deadline, "no checkpoint of the last two within 400 s"
            time.sleep(0.2)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=60)
    # Ray ends a dead driver's actors asynchronously: a Train controller of the killed sweep
    # left running would retrain its trial beside the rerun (seen: steps 7-9 twice)
    deadline = time.monotonic() + 120
    while left := [
        a.class_name
        for a in list_actors(filters=[("state", "=", "ALIVE")])
        if a.class_name in TRAIN_ACTORS and a.actor_id not in earlier
    ]:
        assert time.monotonic() < deadline, f"the killed driver's actors still run: {left}"
        time.sleep(0.5)
    before = _steps(steps)
    (steps / "hold").unlink()

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    after = _steps(steps)
    summary = json.loads((out / "summary.json").read_text())
    point = {
        r["trial"]: f"{r['params']['similarity']}-{r['params']['multi_positive']}"
        for r in summary["trials"]
    }
    assert sorted(after) == ["cos-False", "cos-True", "dot-False", "dot-True"]
    full = list(range(1, EPOCHS * STEPS_PER_EPOCH + 1))
    for trial in finished:  # finished trials were not trained again
        assert after[point[trial]] == before[point[trial]] == full
    for trial in saved:  # continued after its last checkpointed epoch, not from step 1
        again = after[point[trial]][len(before[point[trial]]) :]
        assert again[0] > 1 and (again[0] - 1) % STEPS_PER_EPOCH == 0
        assert again == list(range(again[0], EPOCHS * STEPS_PER_EPOCH + 1))
        history = json.loads((trials / trial / "history.json").read_text())
        assert [row["epoch"] for row in history] == list(range(1, EPOCHS + 1))

    assert [(r["status"], r["epochs"]) for r in summary["trials"]] == [("finished", EPOCHS)] * 4
    table = pd.read_csv(out / "ablation.csv")
    assert len(table) == 4 and {"similarity", "multi_positive", "test_auc", "dice"} <= set(table)
    assert (out / "ablation.png").stat().st_size > 10_000
    written = (out / "ablation.md").read_text()
    assert f"| cos | yes | {EPOCHS} |" in written and f"| dot-product | no | {EPOCHS} |" in written

    # the winner (best validation AUC) is registered and scores as the sweep reported
    winner = max(summary["trials"], key=lambda r: r["val_auc"])
    assert summary["registered"]["trial"] == winner["trial"]
    monkeypatch.setenv(registry.ENV_VAR, config.registry)
    model = RadZero.from_pretrained("tiny@best")
    card = registry.read_card("tiny@best")
    assert card["lineage"]["sweep"]["trial"] == winner["trial"]
    assert card["metrics"]["test"]["auc"] == pytest.approx(winner["test"]["auc"])
    assert 0 < card["metrics"]["test"]["dice_threshold"] < 1  # the served default (serving.md)
    assert card["lineage"]["prepared_fingerprint"] and card["lineage"]["feature_cache"]
    assert PreprocessConfig.from_dict(card["preprocess"]) == model.preprocess
    assert card["config"]["model"]["similarity"] == winner["params"]["similarity"]
    rescored = evaluate(
        EvaluateJobConfig(
            model=registry.resolve("tiny@best"),
            benchmark="phantom",
            root=config.benchmark_root,
            out=str(tmp_path / "rescored"),
            source="features",
            features=card["lineage"]["feature_cache"]
            and str(Path(data) / "features" / card["lineage"]["feature_cache"]),
            figure_examples=0,
        )
    )
    assert rescored["auc"]["macro"] == pytest.approx(winner["test"]["auc"], abs=1e-6)

    # MLflow's local store holds each trial's epochs (a resumed trial's in a second run)
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny-sweep")
    runs: dict[str, list] = {}
    for run in client.search_runs([experiment.experiment_id]):
        runs.setdefault(run.info.run_name, []).append(run)
    for record in summary["trials"]:
        logged = {}
        for run in runs[f"run_trial_{record['trial']}"]:
            # one log_metric call per key: the kill may fall between a report's keys
            auc = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "val_auc")}
            for epoch in client.get_metric_history(run.info.run_id, "epoch"):
                if epoch.step in auc:
                    logged[int(epoch.value)] = auc[epoch.step]
        history = json.loads((trials / record["trial"] / "history.json").read_text())
        reported = {row["epoch"]: row["val_auc"] for row in history}
        # a held trial's epoch-1 report may have died with the driver, whole or in part
        if record["trial"] in saved:
            reported = {e: v for e, v in reported.items() if e in logged or e > 1}
        assert logged == pytest.approx(reported)


@pytest.mark.slow
def test_asha_stops_a_hopeless_trial_and_an_errored_trial_does_not_stop_the_sweep(
    data, tmp_path, caplog
) -> None:
    """One trial at a time, in a fixed order: a good one, one that cannot learn (lr 0: ASHA
    stops it at its first rung), one that raises in its second epoch. (Two at a time, ASHA
    may stop the good one: the failing one's first epoch can be better.)"""
    import ray
    from ray.util.state import list_actors

    def fail(point: dict, step: int, rank: int) -> None:
        if point["lr"] == 1e-3 and step == STEPS_PER_EPOCH + 2:
            raise RuntimeError("injected trial failure")

    config = _config(
        data,
        tmp_path / "search",
        mode="search",
        metric="val_loss",
        space={"lr": [3e-3, 0.0, 1e-3], "similarity": "cos", "multi_positive": True},
        search={
            "num_samples": 3,
            "grace_period": 1,
            "reduction_factor": 2,
            "points": [{"lr": 3e-3}, {"lr": 0.0}, {"lr": 1e-3}],
        },
        max_concurrent_trials=1,
        register={"name": "tiny", "metric": "val_loss", "mode": "min"},
    )
    earlier = {a.actor_id for a in list_actors(filters=[("state", "=", "ALIVE")])}
    earlier_groups = set(ray.util.placement_group_table())
    with caplog.at_level(logging.INFO, logger="radzero.tune"):
        summary = sweep(config, on_step=fail)

    by_lr = {r["params"]["lr"]: r for r in summary["trials"]}
    assert by_lr[3e-3]["status"] == "finished" and by_lr[3e-3]["epochs"] == EPOCHS
    assert by_lr[0.0]["status"] == "stopped" and by_lr[0.0]["epochs"] < EPOCHS
    assert by_lr[1e-3]["status"] == "errored"
    assert "injected trial failure" in by_lr[1e-3]["error"]
    assert by_lr[0.0]["test"] is not None  # a stopped trial's best checkpoint is scored too
    assert summary["registered"]["trial"] == by_lr[3e-3]["trial"]
    assert "injected trial failure" in (tmp_path / "search" / "ablation.md").read_text()
    events = [r.getMessage() for r in caplog.records if r.name == "radzero.tune"]
    trial = {lr: by_lr[lr]["trial"] for lr in by_lr}
    assert f"tune: trial {trial[0.0]} stopped early after epoch 1" in events
    assert any(
        e.startswith(f"tune: trial {trial[1e-3]} errored: ") and "injected trial failure" in e
        for e in events
    )
    # the stopped and the errored trials' Train runs end (Ray tears them down asynchronously):
    # no worker, no controller, no reserved CPU left by this sweep
    deadline = time.monotonic() + 120
    while True:
        alive = list_actors(filters=[("state", "=", "ALIVE")])
        left = [
            a.class_name
            for a in alive
            if a.class_name in TRAIN_ACTORS and a.actor_id not in earlier
        ]
        groups = [
            g["state"]
            for key, g in ray.util.placement_group_table().items()
            if key not in earlier_groups
        ]
        if not left and all(state == "REMOVED" for state in groups):
            break
        assert time.monotonic() < deadline, f"still there after 120 s: {left}, {groups}"
        time.sleep(1)


def test_the_search_is_seeded_so_a_rerun_proposes_the_same_points(tmp_path) -> None:
    """Two searchers from one config propose the same points; another seed proposes others."""
    from radzero.platform.tune.driver import _param_space, _tune_config

    def proposals(seed: int) -> list[dict]:
        config = _config(
            "unused",
            tmp_path,
            mode="search",
            space={"lr": {"loguniform": [1e-4, 1e-2]}, "similarity": ["cos", "dot"]},
            search={"seed": seed},
        )
        searcher = _tune_config(config, config.base_job()).search_alg
        searcher.set_search_properties("val_auc", "max", {"point": _param_space(config)})
        return [searcher.suggest(f"trial-{i}") for i in range(4)]

    first = proposals(0)
    assert first == proposals(0)
    assert first != proposals(1)
    assert all(1e-4 <= p["point"]["lr"] <= 1e-2 for p in first)
