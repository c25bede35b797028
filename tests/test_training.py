"""The plain-PyTorch training step, optimiser groups and schedule."""

from __future__ import annotations

import itertools
import json
import math
import random

import numpy as np
import pytest
import torch

from radzero.config import from_dict
from radzero.eval.metrics import auc_per_class
from radzero.model import create_model
from radzero.model.training import (
    Batch,
    EarlyStopping,
    TrainConfig,
    autocast_dtype,
    build_optimizer,
    cosine_schedule,
    select_sentences,
    train_step,
    validation_metrics,
)


def test_no_weight_decay_on_temperature_norms_and_biases(tiny_config):
    tiny_config["text"]["trainable"] = True
    model = create_model(tiny_config)
    optimizer = build_optimizer(model, TrainConfig(weight_decay=0.05, lr=1e-3, text_lr=1e-5))
    names = {id(p): n for n, p in model.named_parameters()}
    for group in optimizer.param_groups:
        for param in group["params"]:
            name = names[id(param)]
            no_decay = param.ndim <= 1 or name == "log_tau"
            assert group["weight_decay"] == (0.0 if no_decay else 0.05), name
            expected_lr = 1e-5 if name.startswith("text.encoder.") else 1e-3
            assert group["lr"] == expected_lr, name
    assert any(names[id(p)] == "log_tau" for g in optimizer.param_groups for p in g["params"])
    assert not any(
        names[id(p)].startswith("backbone.") for g in optimizer.param_groups for p in g["params"]
    )


def test_cosine_schedule_warms_up_then_decays_to_zero():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    schedule = cosine_schedule(optimizer, warmup_steps=4, total_steps=14)
    lrs = []
    for _ in range(14):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[4] == pytest.approx(1.0) and lrs[9] == pytest.approx(0.5)
    assert all(a >= b for a, b in itertools.pairwise(lrs[4:]))
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0)


def test_single_positive_keeps_one_sentence_per_image():
    per_image = [["a", "b", "c"], ["d"], ["e", "f"]]
    texts, owner = select_sentences(per_image, multi_positive=False, rng=random.Random(0))
    assert owner.tolist() == [0, 1, 2]
    assert [t in options for t, options in zip(texts, per_image, strict=True)] == [True] * 3
    texts, owner = select_sentences(per_image, multi_positive=True, rng=random.Random(0))
    assert texts == list("abcdef") and owner.tolist() == [0, 0, 0, 1, 2, 2]
    with pytest.raises(ValueError, match="no sentences"):
        select_sentences([["a"], []], True, random.Random(0))


def test_train_steps_fit_a_small_batch(tiny_config):
    torch.manual_seed(0)
    model = create_model(tiny_config)
    config = TrainConfig(lr=3e-3, warmup_steps=1, mask_false_negatives=True)
    optimizer = build_optimizer(model, config)
    features = model.backbone_tokens(torch.randn(4, 3, 64, 64))
    sentences, owner = select_sentences(
        [
            ["There is effusion."],
            ["There is a mass.", "There is no effusion."],
            ["There is pneumothorax."],
            ["There is no effusion."],
        ],
        True,
        random.Random(0),
    )
    batch = Batch(sentences=sentences, owner=owner, features=features)
    first = train_step(model, batch, optimizer, None, config)
    for _ in range(30):
        last = train_step(model, batch, optimizer, None, config)
    assert last["loss"] < 0.5 * first["loss"]
    assert {"loss", "lr", "temperature", "grad_norm"} <= set(last)


def test_demo_config_rejects_unknown_keys_and_keeps_defaults():
    from radzero.platform.demo import DemoConfig, demo_config

    config = demo_config({"optim": {"epochs": 2}})
    assert config.optim.epochs == 2 and config.optim.lr == DemoConfig().optim.lr == 2e-3
    with pytest.raises(ValueError, match=r"unknown config key.*optim\.epoch\b"):
        demo_config({"optim": {"epoch": 2}})


def test_bf16_autocast_step_is_finite(tiny_config):
    torch.manual_seed(0)
    model = create_model(tiny_config)
    config = TrainConfig(lr=1e-3, warmup_steps=1)
    optimizer = build_optimizer(model, config)
    batch = Batch(
        sentences=["There is effusion.", "There is no effusion.", "There is a mass."],
        owner=torch.tensor([0, 1, 1]),
        pixels=torch.randn(2, 3, 64, 64),
    )
    metrics = train_step(model, batch, optimizer, None, config, autocast_dtype=torch.bfloat16)
    assert torch.isfinite(torch.tensor(metrics["loss"])) and metrics["loss"] > 0
    assert all(torch.isfinite(p).all() for p in model.align.parameters())


def test_precision_sets_the_autocast_of_a_gpu_step_only():
    gpu, cpu = torch.device("cuda"), torch.device("cpu")  # devices named, none needed
    assert autocast_dtype(TrainConfig(), gpu) is torch.bfloat16  # bf16 is the default
    assert autocast_dtype(TrainConfig(precision="bf16"), cpu) is None
    assert autocast_dtype(TrainConfig(precision="fp32"), gpu) is None
    with pytest.raises(ValueError, match=r"optim\.precision must be one of \('bf16', 'fp32'\)"):
        TrainConfig(precision="fp16")
    with pytest.raises(ValueError, match=r"config optim\.precision must be one of"):
        from_dict(TrainConfig, {"precision": "half"}, "optim.")


def test_fit_refuses_a_set_too_small_for_negatives(tiny_config):
    from radzero.model.training import fit

    model = create_model(tiny_config)
    features = model.backbone_tokens(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match="at least 2 images"):
        fit(model, features, [["There is effusion."]], TrainConfig(epochs=1))


def test_early_stopping_counts_epochs_without_a_better_score():
    lower = EarlyStopping("val_loss", "min", patience=2)
    assert [lower.update(x) for x in (1.0, 0.5, 0.7, 0.5, 0.4, 0.9, 0.8)] == [
        False,  # the first score is the best so far
        False,
        False,  # stale 1
        True,  # stale 2: equal is not better
        False,  # better again
        False,
        True,
    ]
    assert lower.best == 0.4 and lower.stale == 2
    higher = EarlyStopping("val_auc", "max", patience=1)
    assert [higher.update(x) for x in (0.6, 0.7, 0.65)] == [False, False, True]
    never = EarlyStopping("val_auc", "max", patience=None)
    assert not any(never.update(0.5) for _ in range(10)) and never.stale == 9


def test_early_stopping_never_takes_nan_as_its_best():
    stopping = EarlyStopping("val_auc", "max", patience=2)
    assert stopping.update(math.nan) is False and stopping.best is None
    assert stopping.update(0.6) is False and (stopping.best, stopping.stale) == (0.6, 0)
    assert stopping.update(math.nan) is False and stopping.update(math.nan) is True


def test_early_stopping_resumes_from_its_saved_state_as_json():
    stopping = EarlyStopping("val_loss", "min", patience=3)
    for score in (1.0, 0.8, 0.9, 0.95):
        stopping.update(score)
    saved = json.loads(json.dumps(stopping.state()))
    assert EarlyStopping.from_state(saved) == stopping

    resumed = EarlyStopping("val_loss", "min", patience=3)
    resumed.resume(saved)
    assert (resumed.best, resumed.stale) == (0.8, 2)
    assert resumed.update(0.85) is True  # the third epoch without a better loss
    longer = EarlyStopping("val_loss", "min", patience=5)
    longer.resume(saved)
    assert longer.update(0.85) is False and longer.patience == 5
    with pytest.raises(ValueError, match=r"watched 'val_loss' \(min\).*'val_auc' \(max\)"):
        EarlyStopping("val_auc", "max", patience=3).resume(saved)
    with pytest.raises(ValueError, match="patience must be >= 1"):
        EarlyStopping("val_auc", "max", patience=0)


def test_validation_metrics_leave_unknown_labels_out_of_their_class():
    classes = ["effusion", "mass", "nodule"]
    scores = np.array([[0.9, 0.2, 0.1], [0.8, 0.7, 0.6], [0.3, 0.6, 0.4], [0.1, 0.1, 0.9]])
    labels = np.array(
        [[1, 0, np.nan], [np.nan, 1, 1], [-1, 0, 0], [0, np.nan, 0]], dtype=np.float64
    )
    metrics = validation_metrics([0.5, 1.5], scores, labels, classes)

    assert metrics["val_loss"] == pytest.approx(1.0)
    # effusion: rows 0 and 3 (1 beats 0); mass: rows 0-2 (1 beats both); nodule: rows 1-3, the
    # positive beats row 2 only. Counting NaN and -1 as negatives would give other numbers.
    assert metrics["val_auc"] == pytest.approx((1.0 + 1.0 + 0.5) / 3)
    unknown = np.where(labels == -1, np.nan, labels)
    assert metrics["val_auc"] == auc_per_class(unknown, scores, classes)["macro"]
    as_negatives = (np.nan_to_num(labels) == 1).astype(int)
    assert auc_per_class(as_negatives, scores, classes)["macro"] != metrics["val_auc"]
    assert math.isnan(validation_metrics([], scores, labels, classes)["val_loss"])
    with pytest.raises(ValueError, match="must be 0, 1 or NaN"):
        validation_metrics([1.0], scores, np.full((4, 3), 2.0), classes)
