"""The plain-PyTorch training step, optimiser groups and schedule."""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from radzero.model import create_model
from radzero.model.training import (
    Batch,
    TrainConfig,
    build_optimizer,
    cosine_schedule,
    select_sentences,
    train_step,
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

    config = demo_config({"train": {"epochs": 2}})
    assert config.train.epochs == 2 and config.train.lr == DemoConfig().train.lr
    with pytest.raises(ValueError, match=r"unknown config key.*train\.epoch\b"):
        demo_config({"train": {"epoch": 2}})


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


def test_fit_refuses_a_set_too_small_for_negatives(tiny_config):
    from radzero.model.training import fit

    model = create_model(tiny_config)
    features = model.backbone_tokens(torch.randn(1, 3, 64, 64))
    with pytest.raises(ValueError, match="at least 2 images"):
        fit(model, features, [["There is effusion."]], TrainConfig(epochs=1))
