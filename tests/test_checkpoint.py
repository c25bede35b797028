"""Training checkpoints: exact resume, the model folder, clear errors, no pickle."""

from __future__ import annotations

import copy
import json
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from radzero import storage
from radzero.model import RadZero, copy_pretrained, create_model
from radzero.model.checkpoint import (
    OPTIMIZER_NAME,
    STATE_NAME,
    load_training_state,
    read_training_state,
    save_training_state,
)
from radzero.model.radzero import WEIGHTS_NAME
from radzero.model.training import (
    Batch,
    TrainConfig,
    build_optimizer,
    cosine_schedule,
    iterate_batches,
    train_step,
)
from tests.conftest import TINY_CONFIG

CONFIG = TrainConfig(lr=3e-3, batch_size=3, warmup_steps=2)
TOTAL_STEPS = 12
SENTENCES = [
    ["There is effusion."],
    ["There is a mass.", "There is no effusion."],
    ["There is pneumothorax."],
    ["There is no effusion."],
    ["The heart is enlarged.", "There is a mass."],
    ["There is consolidation."],
]

Trainer = tuple[RadZero, torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]


def make_trainer(tiny_config: dict, seed: int) -> Trainer:
    """A tiny model with the real optimiser groups and cosine schedule.

    The frozen text encoder caches its embeddings; encoding every sentence in one call up front
    makes them bit-identical across models (batch padding changes the last bits otherwise).
    """
    torch.manual_seed(seed)
    model = create_model(tiny_config)
    with torch.no_grad():
        model.encode_text(list(dict.fromkeys(s for options in SENTENCES for s in options)))
    optimizer = build_optimizer(model, CONFIG)
    return model, optimizer, cosine_schedule(optimizer, CONFIG.warmup_steps, TOTAL_STEPS)


def make_batches(model: RadZero, epochs: int) -> list[Batch]:
    """Shuffled batches of cached backbone features; the frozen backbone is computed once."""
    torch.manual_seed(0)
    with torch.no_grad():
        features = model.backbone_tokens(torch.randn(len(SENTENCES), 3, 64, 64))
    rng = random.Random(0)
    return [b for _ in range(epochs) for b in iterate_batches(features, SENTENCES, CONFIG, rng)]


def run(trainer: Trainer, batches: list[Batch], seed: int = 1) -> dict[str, float]:
    """Train on ``batches`` from a fixed torch RNG state; returns the last step's metrics."""
    model, optimizer, scheduler = trainer
    torch.manual_seed(seed)
    for batch in batches:
        metrics = train_step(model, batch, optimizer, scheduler, CONFIG)
    return metrics


def weights(model: RadZero) -> dict[str, torch.Tensor]:
    return {name: t.clone() for name, t in model.trainable_state_dict().items()}


@pytest.fixture(scope="module")
def tiny_config() -> dict:
    """The tiny model of conftest's ``tiny_config``, shared by this module's fixtures."""
    return copy.deepcopy(TINY_CONFIG)


@pytest.fixture(scope="module")
def trained(tiny_config: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint after two training steps, written once for the module."""
    trainer = make_trainer(tiny_config, seed=0)
    metrics = run(trainer, make_batches(trainer[0], epochs=1))
    path = tmp_path_factory.mktemp("trained")
    return save_training_state(path, *trainer, step=2, epoch=1, metrics=metrics)


@pytest.fixture
def saved(trained: Path, tmp_path: Path) -> Path:
    """A private copy of the trained checkpoint, free to damage."""
    return Path(shutil.copytree(trained, tmp_path / "ckpt"))


def test_resume_continues_exactly_and_needs_optimizer_and_scheduler(tiny_config, tmp_path):
    original = make_trainer(tiny_config, seed=0)
    batches = make_batches(original[0], epochs=3)  # 6 steps: 3 before the save, 3 after
    metrics = run(original, batches[:3])
    path = save_training_state(tmp_path / "ckpt", *original, step=3, epoch=1, metrics=metrics)
    run(original, batches[3:])
    expected = weights(original[0])

    def resume(keep: str) -> Trainer:
        model, optimizer, scheduler = make_trainer(tiny_config, seed=1)
        info = load_training_state(path, model, optimizer, scheduler)
        assert info == {"step": 3, "epoch": 1, "metrics": metrics}
        if keep == "weights":
            optimizer = build_optimizer(model, CONFIG)
        if keep in ("weights", "optimizer"):
            scheduler = cosine_schedule(optimizer, CONFIG.warmup_steps, TOTAL_STEPS)
        trainer = (model, optimizer, scheduler)
        run(trainer, batches[3:])
        return trainer

    resumed = resume("all")
    torch.testing.assert_close(weights(resumed[0]), expected, atol=0, rtol=0)
    assert resumed[1].param_groups[0]["betas"] == original[1].param_groups[0]["betas"]
    assert isinstance(resumed[1].param_groups[0]["betas"], tuple)
    assert [g["lr"] for g in resumed[1].param_groups] == [g["lr"] for g in original[1].param_groups]
    assert resumed[2].state_dict() == original[2].state_dict()
    assert read_training_state(path) == {"step": 3, "epoch": 1, "metrics": metrics}

    # Without the saved optimiser moments, or the saved schedule, training goes elsewhere.
    for keep in ("weights", "optimizer"):
        other = resume(keep)
        assert any(
            not torch.equal(other_w, expected[k]) for k, other_w in weights(other[0]).items()
        )
    assert other[1].param_groups[0]["lr"] != original[1].param_groups[0]["lr"]


def test_checkpoint_folder_loads_as_a_model(tiny_config, saved):
    trainer = make_trainer(tiny_config, seed=5)
    load_training_state(saved, *trainer)
    loaded = RadZero.from_pretrained(saved)
    torch.testing.assert_close(weights(loaded), weights(trainer[0]), atol=0, rtol=0)


def test_models_round_trip_through_s3(tiny_config, saved, s3_bucket):
    """save_pretrained / from_pretrained on an s3:// prefix, and a training checkpoint's model
    copied there (as the train job exports its best one) without building it."""
    model = RadZero.from_pretrained(saved).eval()
    uri = f"s3://{s3_bucket}/runs/model"
    assert model.save_pretrained(uri) == uri
    assert storage.list_files(uri) == [f"{uri}/config.json", f"{uri}/{WEIGHTS_NAME}"]
    loaded = RadZero.from_pretrained(uri).eval()
    torch.testing.assert_close(weights(loaded), weights(model), atol=0, rtol=0)
    assert loaded.preprocess == model.preprocess and loaded.config == model.config
    pixels = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(
        loaded.similarity_maps(["There is effusion."], images=pixels),
        model.similarity_maps(["There is effusion."], images=pixels),
        atol=0,
        rtol=0,
    )
    exported = f"s3://{s3_bucket}/runs/exported"
    copy_pretrained(saved, exported)
    assert sorted(storage.list_files(exported)) == [
        f"{exported}/config.json",
        f"{exported}/{WEIGHTS_NAME}",
    ]  # the model only, not the optimiser or training state
    torch.testing.assert_close(weights(RadZero.from_pretrained(exported)), weights(model))
    with pytest.raises(FileNotFoundError, match=rf"s3://{s3_bucket}/nothing/config\.json is miss"):
        RadZero.from_pretrained(f"s3://{s3_bucket}/nothing")
    with pytest.raises(FileNotFoundError, match=r"config\.json is missing"):
        copy_pretrained(f"s3://{s3_bucket}/nothing", exported)


def test_only_json_and_safetensors_no_staging_left(saved):
    files = sorted(p.relative_to(saved).as_posix() for p in saved.rglob("*"))
    assert files == ["config.json", "model.safetensors", OPTIMIZER_NAME, STATE_NAME]
    assert json.loads((saved / STATE_NAME).read_text())["optimizer"]["class"] == "AdamW"


def test_read_training_state_needs_no_tensors(saved):
    (saved / WEIGHTS_NAME).unlink()
    (saved / OPTIMIZER_NAME).unlink()
    info = read_training_state(saved)
    assert info["step"] == 2 and info["epoch"] == 1 and set(info["metrics"]) >= {"loss", "lr"}


def test_an_optimizer_without_state_round_trips(tiny_config, tmp_path):
    model, optimizer, _ = make_trainer(tiny_config, seed=0)
    save_training_state(tmp_path, model, optimizer, None, step=0, epoch=0)
    fresh = make_trainer(tiny_config, seed=1)
    assert load_training_state(tmp_path, fresh[0], fresh[1], None)["metrics"] == {}
    torch.testing.assert_close(weights(fresh[0]), weights(model), atol=0, rtol=0)
    with pytest.raises(ValueError, match=f"{STATE_NAME} holds no scheduler state"):
        load_training_state(tmp_path, *fresh)


def _edit_json(key: str, value: object) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        meta = json.loads((path / STATE_NAME).read_text())
        meta[key] = value
        (path / STATE_NAME).write_text(json.dumps(meta))

    return edit


def _truncate(name: str) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        data = (path / name).read_bytes()
        (path / name).write_bytes(data[: len(data) // 2])

    return edit


def _flip_last_byte(path: Path) -> None:
    data = bytearray((path / OPTIMIZER_NAME).read_bytes())
    data[-1] ^= 0xFF
    (path / OPTIMIZER_NAME).write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("damage", "error", "match"),
    [
        (lambda p: (p / STATE_NAME).unlink(), FileNotFoundError, f"{STATE_NAME} is missing"),
        (lambda p: (p / OPTIMIZER_NAME).unlink(), FileNotFoundError, f"{OPTIMIZER_NAME} is miss"),
        (_truncate(STATE_NAME), ValueError, f"{STATE_NAME} is not valid JSON"),
        (_edit_json("format_version", 99), ValueError, f"{STATE_NAME}: unsupported .* format 99"),
        (_edit_json("step", "3"), ValueError, f"{STATE_NAME}: step and epoch must be integers"),
        (_truncate(OPTIMIZER_NAME), ValueError, f"{OPTIMIZER_NAME} is corrupt"),
        (_truncate(WEIGHTS_NAME), ValueError, f"{WEIGHTS_NAME} is corrupt"),
        (_flip_last_byte, ValueError, f"{OPTIMIZER_NAME} does not match the checksum"),
    ],
    ids=[
        "no-state",
        "no-optimizer",
        "bad-json",
        "version",
        "step",
        "bad-optim",
        "bad-model",
        "bit",
    ],
)
def test_damaged_checkpoints_give_clear_errors(tiny_config, saved, damage, error, match):
    damage(saved)
    with pytest.raises(error, match=match):
        load_training_state(saved, *make_trainer(tiny_config, seed=1))


def test_read_training_state_refuses_corrupt_json(saved):
    (saved / STATE_NAME).write_text('{"format_version": 1, "step": 2,')
    with pytest.raises(ValueError, match=f"{STATE_NAME} is not valid JSON"):
        read_training_state(saved)


def test_a_differently_built_optimizer_is_refused(tiny_config, saved):
    model, optimizer, _ = make_trainer(tiny_config, seed=1)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    one_group = torch.optim.AdamW(params, lr=CONFIG.lr)
    with pytest.raises(ValueError, match=rf"{STATE_NAME} holds \d+ optimizer param groups"):
        load_training_state(saved, model, one_group, None)
    groups = [dict(g, params=list(g["params"])) for g in optimizer.param_groups]
    groups[0]["params"] = groups[0]["params"][1:]
    fewer = torch.optim.AdamW(groups, lr=CONFIG.lr)
    with pytest.raises(ValueError, match=f"{STATE_NAME}: params per optimizer param group"):
        load_training_state(saved, model, fewer, None)
    sgd = torch.optim.SGD(optimizer.param_groups, lr=CONFIG.lr)
    with pytest.raises(ValueError, match="holds a AdamW optimizer, not a SGD"):
        load_training_state(saved, model, sgd, None)


def test_a_crash_mid_save_never_looks_valid(tiny_config, saved, monkeypatch):
    trainer = make_trainer(tiny_config, seed=1)
    load_training_state(saved, *trainer)
    run(trainer, make_batches(trainer[0], epochs=1))
    real_replace = os.replace

    def crash_before_state(src: str | Path, dst: str | Path) -> None:
        if Path(dst).name == STATE_NAME:
            raise OSError("simulated crash")
        real_replace(src, dst)

    monkeypatch.setattr("radzero.model.checkpoint.os.replace", crash_before_state)
    with pytest.raises(OSError, match="simulated crash"):
        save_training_state(saved, *trainer, step=4, epoch=2)
    assert read_training_state(saved)["step"] == 2  # the old JSON, whole
    assert sorted(p.name for p in saved.iterdir()) == sorted(
        ["config.json", WEIGHTS_NAME, OPTIMIZER_NAME, STATE_NAME]
    )
    with pytest.raises(ValueError, match=f"{WEIGHTS_NAME} does not match the checksum"):
        load_training_state(saved, *make_trainer(tiny_config, seed=1))


def test_state_that_is_not_json_is_refused_before_writing(tiny_config, tmp_path):
    class Factor:
        """A callable lambda whose attributes LambdaLR saves: a tensor is not JSON."""

        def __init__(self) -> None:
            self.scale = torch.tensor(1.0)

        def __call__(self, step: int) -> float:
            return float(self.scale)

    model, optimizer, _ = make_trainer(tiny_config, seed=0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, Factor())
    with pytest.raises(ValueError, match=r"scale is a Tensor, which can't be stored as JSON"):
        save_training_state(tmp_path / "ckpt", model, optimizer, scheduler, step=0, epoch=0)
    assert not (tmp_path / "ckpt").exists()
