"""The global batch: 2 workers x batch b give the loss and gradients of 1 worker x batch 2b."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from radzero.model import RadZero, RadZeroConfig
from radzero.model.distributed import average_gradients, gather_objects, gather_with_grad
from radzero.model.training import Batch, TrainConfig, batch_loss, sentence_ids
from radzero.platform.session import free_port

IMAGES = 8
SENTENCES = [  # 1 to 3 per image; "There is no nodule." repeats across images
    ["There is pleural effusion of left costophrenic angle.", "There is no nodule."],
    ["There is cardiomegaly."],
    ["There is no nodule.", "There is pneumothorax of right apex.", "There is mass."],
    ["There may be consolidation of lingula."],
    ["There is no nodule.", "There is cardiomegaly."],
    ["There is nodule of right upper lobe."],
    ["There is no pneumothorax.", "There is no mass.", "There is cardiomegaly."],
    ["There is pleural effusion."],
]


def _model(config: dict) -> RadZero:
    torch.manual_seed(0)
    return RadZero(RadZeroConfig.from_dict(config))


def _batch(images: range, features: torch.Tensor) -> Batch:
    sentences = [s for i in images for s in SENTENCES[i]]
    owner = torch.tensor([k for k, i in enumerate(images) for _ in SENTENCES[i]])
    return Batch(sentences=sentences, owner=owner, features=features[images.start : images.stop])


def _loss_and_grads(model: RadZero, batch: Batch, config: TrainConfig) -> tuple[float, dict]:
    loss = batch_loss(model, batch, config)
    loss.backward()
    params = dict(model.named_parameters())
    average_gradients(p for p in params.values() if p.requires_grad)
    grads = {k: p.grad.clone() for k, p in params.items() if p.grad is not None}
    return float(loss), grads


def _worker(rank: int, port: int, config: dict, features: torch.Tensor, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        half = IMAGES // 2
        batch = _batch(range(rank * half, (rank + 1) * half), features)
        result = _loss_and_grads(_model(config), batch, TrainConfig(mask_false_negatives=True))
        torch.save(result, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_two_workers_match_one_worker_with_the_whole_batch(tiny_config, tmp_path) -> None:
    torch.manual_seed(1)
    features = torch.randn(IMAGES, 17, 64)  # the tiny backbone's tokens at 64 px
    model = _model(tiny_config)
    want_loss, want_grads = _loss_and_grads(
        model, _batch(range(IMAGES), features), TrainConfig(mask_false_negatives=True)
    )
    assert len(want_grads) > 3

    mp.spawn(_worker, args=(free_port(), tiny_config, features, str(tmp_path)), nprocs=2)
    for rank in range(2):
        loss, grads = torch.load(tmp_path / f"rank{rank}.pt")
        assert loss == pytest.approx(want_loss, abs=1e-5)
        assert grads.keys() == want_grads.keys()
        for name, grad in grads.items():
            torch.testing.assert_close(grad, want_grads[name], atol=1e-5, rtol=1e-4, msg=name)


def test_without_a_process_group_everything_is_local() -> None:
    x = torch.randn(3, 4, requires_grad=True)
    assert gather_with_grad(x) is x
    assert gather_objects(([0.5], "val")) == [([0.5], "val")]
    assert sentence_ids(["a", "b", "a"]).tolist()[0] == sentence_ids(["a", "b", "a"]).tolist()[2]
