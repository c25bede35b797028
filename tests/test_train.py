"""Ray Train end to end on phantom tokens: two workers, checkpoints, a worker fault, early stop."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from ray.data.expressions import col

from radzero import registry, storage
from radzero.config import deep_merge, from_dict
from radzero.data import phantom
from radzero.eval import scoring
from radzero.eval.metrics import auc_per_class
from radzero.model import RadZero
from radzero.model.checkpoint import read_training_state
from radzero.platform.features import (
    cache_location,
    read_features,
)
from radzero.platform.train import REPORT_METRICS, TrainJobConfig, train
from tests.conftest import TINY_VISION

METRICS = {"loss", "lr", "temperature", "images_per_s", "steps_per_s", "val_loss", "val_auc"}
STEPS_PER_EPOCH = 6  # 45 training phantoms: 22 per worker (equal split), batches of 4


@pytest.fixture(scope="module")
def data(phantom_tokens) -> str:
    return phantom_tokens


def _config(data: str, storage_path: Path | str, **overrides) -> TrainJobConfig:
    base = {
        "name": "tiny",
        "data": data,
        "model_overrides": {
            "vision": dict(TINY_VISION),
            "align": {"layers": 1, "heads": 2},
            "text": {"trainable": False},
        },
        "optim": {"epochs": 2, "batch_size": 8, "lr": 1e-3, "warmup_steps": 2},
        "scaling": {"num_workers": 2, "cpus_per_worker": 0.5},
        "storage_path": str(storage_path),
    }
    return from_dict(TrainJobConfig, deep_merge(base, overrides))


def _split_rows(config: TrainJobConfig, split: str) -> pd.DataFrame:
    """The cached-token rows of one split, read in this process."""
    vision = config.model_config().vision
    target = cache_location(config.data, config.data, vision, int(vision.image_size))
    return read_features(target).filter(expr=col("split") == split).to_pandas()


@pytest.fixture(scope="module")
def two_workers(data, tmp_path_factory) -> tuple[TrainJobConfig, dict, Path]:
    """One run on two workers, keeping 1 checkpoint, with TensorBoard: config, summary, folder."""
    folder = tmp_path_factory.mktemp("two-workers")
    config = _config(
        data,
        folder,
        checkpoint={"keep": 1},
        tensorboard=str(folder / "tb"),
        register="tiny",
        registry=str(folder / "registry"),
    )
    return config, train(config), folder


@pytest.mark.slow
def test_two_workers_train_keep_the_best_and_export_it(two_workers) -> None:
    _, summary, folder = two_workers
    assert summary["epochs"] == 2 and summary["steps"] == 2 * STEPS_PER_EPOCH
    history = summary["history"]
    assert [row["epoch"] for row in history] == [1, 2]
    assert all(set(row) == {"epoch", "step", *METRICS} for row in history)
    assert all(0.0 <= row["val_auc"] <= 1.0 and row["images_per_s"] > 0 for row in history)
    best_epoch = max(history, key=lambda row: row["val_auc"])["epoch"]
    assert summary["best"]["epoch"] == best_epoch

    run = folder / "tiny"
    kept = {read_training_state(p)["epoch"]: p for p in run.glob("checkpoint_*") if p.is_dir()}
    assert set(kept) == {best_epoch, 2}  # checkpoint.keep = 1, and Ray keeps the latest too
    model = RadZero.from_pretrained(summary["model"])
    saved = RadZero.from_pretrained(kept[best_epoch])
    for name, value in model.trainable_state_dict().items():
        torch.testing.assert_close(value, saved.trainable_state_dict()[name], rtol=0, atol=0)
    assert storage.exists(str(run / "summary.json"))
    assert list((folder / "tb").glob("events.out.tfevents.*"))


def test_a_training_run_registers_its_exported_model_with_a_card(two_workers) -> None:
    config, summary, folder = two_workers
    assert summary["registered"]["name"] == "tiny" and summary["registered"]["version"] == 1
    registered = RadZero.from_pretrained("tiny", registry=config.registry)
    exported = RadZero.from_pretrained(summary["model"])
    for name, value in exported.trainable_state_dict().items():
        assert torch.equal(value, registered.trainable_state_dict()[name])
    card = registry.read_card("tiny@1", root=config.registry)
    assert card["metrics"]["validation"] == summary["best"]
    assert card["config"]["train"]["name"] == "tiny"
    lineage = card["lineage"]
    assert lineage["feature_cache"].startswith("random-") and lineage["prepared_fingerprint"]
    assert lineage["training_run"] == str(folder / "tiny") and lineage["sweep"] is None
    assert re.fullmatch(r"[0-9a-f]{40}", lineage["git_commit"])  # the tests run in a checkout
    assert card["preprocess"]["image_size"] == 64
    # running the finished run again registers nothing new
    again = train(config)
    assert again["registered"] == summary["registered"]
    assert [v["version"] for v in registry.list("tiny", root=config.registry)] == [1]


@pytest.mark.slow
def test_the_validation_auc_is_the_evaluation_auc_of_the_exported_model(two_workers) -> None:
    """The workers scored shares of the validation split; together, every row exactly once,
    with unknown (NaN) labels left out of their class as the evaluation job does."""
    config, summary, _ = two_workers
    classes = summary["classes"]
    assert classes == list(phantom.FINDINGS)
    val = _split_rows(config, "val").reset_index(drop=True)
    assert val[classes].isna().any().all()
    model = RadZero.from_pretrained(summary["model"])
    tokens = torch.as_tensor(np.stack(val["tokens"].tolist()), dtype=torch.float32)
    records = scoring.score_batch(
        model,
        None,
        [scoring.Truth() for _ in range(len(val))],
        classes,
        model.config.templates,
        features=tokens,
    )
    result = scoring.summarise(pd.concat([val[classes], pd.DataFrame(records)], axis=1), classes)
    assert result["auc"]["skipped"] == ["mass"]  # only known positives are left
    assert summary["best"]["val_auc"] == pytest.approx(result["auc"]["macro"], abs=1e-6)
    # Counting unknown labels as negatives (the old validation) gives another number.
    scores = np.stack([record["probabilities"] for record in records])
    as_negatives = (val[classes].fillna(0).to_numpy() == 1).astype(int)
    old = auc_per_class(as_negatives, scores, classes)["macro"]
    assert old != pytest.approx(result["auc"]["macro"], abs=1e-6)


@pytest.mark.slow
def test_a_worker_failure_resumes_from_the_last_checkpoint(data, tmp_path) -> None:
    """A worker raises once in epoch 3; the group restarts from epoch 2's checkpoint.

    Early stopping on the smallest ``step`` never sees a better epoch after the first, so
    patience 2 stops after epoch 3, if the checkpoint carried its count through the restart
    (started afresh, it would run all 5 epochs).
    """
    marker, steps = tmp_path / "failed-once", tmp_path / "steps.txt"
    failing_step = 2 * STEPS_PER_EPOCH + 4

    def fail_once(step: int, rank: int) -> None:
        if rank == 0:
            with open(steps, "a") as out:
                out.write(f"{step}\n")
        if step == failing_step and rank == 1 and not marker.exists():
            marker.touch()
            raise RuntimeError("injected worker failure")

    config = _config(
        data,
        tmp_path,
        max_failures=1,
        patience=2,
        optim={"epochs": 5},
        checkpoint={"metric": "step", "mode": "min"},
    )
    summary = train(config, on_step=fail_once)

    assert marker.exists()
    assert summary["epochs"] == 3 and summary["steps"] == 3 * STEPS_PER_EPOCH
    seen = [int(line) for line in steps.read_text().split()]
    first = 2 * STEPS_PER_EPOCH + 1
    resumed_at = seen.index(first, first)  # the second time
    assert seen[:resumed_at] == list(range(1, resumed_at + 1))  # to the failure, no further
    assert seen[resumed_at:] == list(range(first, 3 * STEPS_PER_EPOCH + 1))


@pytest.mark.slow
def test_early_stopping_and_training_from_images(data, tmp_path) -> None:
    """With lr 0 nothing improves: patience 1 stops after the second epoch."""
    config = _config(
        data,
        tmp_path,
        source="images",
        patience=1,
        optim={"epochs": 4, "lr": 0.0},
        scaling={"num_workers": 1, "cpus_per_worker": 1.0},
        checkpoint={"metric": "val_loss", "mode": "min"},
    )
    summary = train(config)
    assert summary["epochs"] == 2
    assert summary["history"][0]["val_loss"] == pytest.approx(summary["history"][1]["val_loss"])


def test_config_errors_are_clear(data, tmp_path) -> None:
    with pytest.raises(ValueError, match="must divide evenly"):
        _config(data, tmp_path, optim={"batch_size": 9})
    with pytest.raises(ValueError, match="unknown config key"):
        _config(data, tmp_path, epochs=3)
    with pytest.raises(ValueError, match=r"classes \['effusion'\] are not label columns"):
        train(_config(data, tmp_path, classes=["effusion"]))
    other = {"vision": {**TINY_VISION, "seed": 7}}
    with pytest.raises(FileNotFoundError, match="no finished features output"):
        train(_config(data, tmp_path, model_overrides=other))


def test_an_unknown_checkpoint_metric_is_refused_at_load() -> None:
    with pytest.raises(ValueError, match=r"checkpoint\.metric 'val_acc'.*allowed: .*val_auc"):
        from_dict(TrainJobConfig, {"checkpoint": {"metric": "val_acc"}})
    for metric in REPORT_METRICS:
        assert from_dict(TrainJobConfig, {"checkpoint": {"metric": metric}}).checkpoint.metric
    assert {"val_auc", "val_loss", "loss"} <= set(REPORT_METRICS)


@pytest.mark.slow
def test_checkpoints_and_the_export_go_to_s3(data, s3_bucket, tmp_path) -> None:
    """storage_path on the local S3 endpoint: checkpoints, history and the exported model."""
    root = f"s3://{s3_bucket}/runs"
    config = _config(data, root, optim={"epochs": 1})
    config.scaling.num_workers = 1
    summary = train(config)

    assert summary["model"] == f"{root}/tiny/model"
    files = storage.list_files(f"{root}/tiny")
    assert any("/checkpoint_" in f and f.endswith("training_state.json") for f in files), files
    local = tmp_path / "model"
    for name in ("config.json", "model.safetensors"):
        (local / name).parent.mkdir(exist_ok=True)
        (local / name).write_bytes(storage.read_bytes(f"{summary['model']}/{name}"))
    assert RadZero.from_pretrained(local).trainable_state_dict().keys()
