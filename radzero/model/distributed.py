"""The global batch across data-parallel workers: every worker's loss sees every worker's negatives.

Each worker encodes its own images and sentences, then :func:`gather_batch` concatenates the
encodings of all workers in rank order with autograd (as open_clip gathers CLIP features), so
VL-CABS and MP-NCE run over the global batch. Every worker computes the same global loss; the
all-gather's backward sums the workers' gradients into each local encoding, and
:func:`average_gradients` then divides by the world size, which leaves each worker with the
exact gradient of the global loss. Plain ``torch.distributed``: no Ray here, and one process
(or no process group) is a no-op.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def world_size() -> int:
    """Workers in the default process group (1 without one)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (n_r, ...) of every worker along dim 0; n_r may differ per worker."""
    if world_size() == 1:
        return x
    sizes = _gather_sizes(x.shape[0], x.device)
    longest = max(sizes)
    padded = torch.cat([x, x.new_zeros((longest - x.shape[0], *x.shape[1:]))])
    parts = _AllGather.apply(padded)
    return torch.cat([part[:n] for part, n in zip(parts, sizes, strict=True)])


class _AllGather(torch.autograd.Function):
    """All-gather with autograd: each worker's input gets the sum over workers of the gradient
    of its part (what torch.distributed.nn's deprecated all_gather computed)."""

    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        parts = [torch.empty_like(x) for _ in range(world_size())]
        dist.all_gather(parts, x.contiguous())
        return tuple(parts)

    @staticmethod
    def backward(ctx: object, *grads: torch.Tensor) -> torch.Tensor:
        summed = torch.stack(grads).contiguous()
        dist.all_reduce(summed)
        return summed[dist.get_rank()]


def gather_batch(
    tokens: torch.Tensor, text: torch.Tensor, owner: torch.Tensor, sentences: Sequence[str]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """The global batch: image tokens, sentence embeddings, owners (as global image indices)
    and sentence strings of all workers, in rank order."""
    if world_size() == 1:
        return tokens, text, owner, list(sentences)
    images = _gather_sizes(tokens.shape[0], tokens.device)
    rank = dist.get_rank()
    offset = sum(images[:rank])
    all_owner = torch.cat(_all_gather_padded(owner + offset))
    return (
        gather_with_grad(tokens),
        gather_with_grad(text),
        all_owner,
        [s for part in gather_objects(list(sentences)) for s in part],
    )


def gather_objects(value: T) -> list[T]:
    """``value`` (any picklable object) of every worker, in rank order; no autograd."""
    if world_size() == 1:
        return [value]
    values: list = [None] * world_size()
    dist.all_gather_object(values, value)
    return values


def broadcast_parameters(module: torch.nn.Module, source: int = 0) -> None:
    """Give every worker rank ``source``'s parameters and buffers (in place)."""
    if world_size() == 1:
        return
    for tensor in [*module.parameters(), *module.buffers()]:
        dist.broadcast(tensor.data, src=source)


def average_gradients(parameters: Iterable[torch.nn.Parameter]) -> None:
    """Average the gradients of ``parameters`` over the workers (in place)."""
    size = world_size()
    if size == 1:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])  # one all-reduce, not one per parameter
    dist.all_reduce(flat)
    flat.div_(size)
    for grad, part in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
        grad.copy_(part.view_as(grad))


def _gather_sizes(n: int, device: torch.device) -> list[int]:
    local = torch.tensor([n], device=device)
    sizes = [torch.zeros_like(local) for _ in range(world_size())]
    dist.all_gather(sizes, local)
    return [int(s) for s in sizes]


def _all_gather_padded(x: torch.Tensor) -> list[torch.Tensor]:
    """All-gather without autograd, for index tensors whose length differs per worker."""
    sizes = _gather_sizes(x.shape[0], x.device)
    padded = torch.cat([x, x.new_zeros(max(sizes) - x.shape[0])])
    parts = [torch.zeros_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return [part[:n] for part, n in zip(parts, sizes, strict=True)]
