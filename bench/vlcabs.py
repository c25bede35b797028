"""VL-CABS + MP-NCE forward+backward: radzero's implementation against a straightforward one.

Each variant runs in its own subprocess so its peak memory (growth of the resident set over
inputs and libraries on CPU, allocator peak on CUDA) is its own; times are medians over
repeats. The last line is one JSON object.

    python bench/vlcabs.py [--batch 32 --sentences 200 --tokens 257 --dim 768]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F


def straightforward(text, tokens, tau, owner):
    """The formulas transcribed directly: exp without max-subtraction, dense masks."""
    t = F.normalize(text, dim=-1)
    v = F.normalize(tokens, dim=-1)
    scores = torch.einsum("bld,nd->bnl", v, t) / tau
    attn = torch.exp(scores) / torch.exp(scores).sum(-1, keepdim=True)
    pooled = torch.einsum("bnl,bld->bnd", attn, v)
    logits = torch.einsum("bnd,nd->bn", F.normalize(pooled, dim=-1), t) / tau
    n_images, n_text = logits.shape
    own = F.one_hot(owner, n_images).T.bool()  # (B, N)
    e = torch.exp(logits)
    positive = e[owner, torch.arange(n_text)]
    image_neg = (e * ~own).sum(1)[owner]
    text_neg = (e * ~own).sum(0)
    loss_i = -torch.log(positive / (positive + image_neg)).mean()
    loss_t = -torch.log(positive / (positive + text_neg)).mean()
    return loss_i + loss_t


def radzero_impl(chunk_size):
    from radzero.model import mp_nce_loss, vlcabs

    def run(text, tokens, tau, owner):
        logits, _ = vlcabs(text, tokens, tau, chunk_size=chunk_size, return_scores=False)
        return mp_nce_loss(logits, owner)

    return run


def measure(name: str, args: argparse.Namespace) -> dict:
    """Median step time and peak memory growth of one variant in this process."""
    import radzero.model  # noqa: F401  (same imported libraries for every variant)

    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    per_image = args.sentences // args.batch
    owner = torch.arange(args.batch, device=device).repeat_interleave(per_image)
    owner = torch.cat([owner, torch.arange(args.sentences - owner.numel(), device=device)])
    text = torch.randn(args.sentences, args.dim, device=device, requires_grad=True)
    tokens = torch.randn(args.batch, args.tokens, args.dim, device=device, requires_grad=True)
    tau = torch.tensor(0.07, device=device, requires_grad=True)
    fn = {
        "straightforward": lambda: straightforward,
        "radzero": lambda: radzero_impl(None),
        "radzero_chunked": lambda: radzero_impl(args.chunk),
    }[name]()

    def step():
        loss = fn(text, tokens, tau, owner)
        loss.backward()
        text.grad = tokens.grad = tau.grad = None
        return float(loss.detach())

    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    loss = step()  # warm-up; its peak counts too
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:  # growth of the process's peak resident set over inputs + imported libraries
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return {
        "seconds": statistics.median(times),
        "peak_bytes": peak,
        "loss": loss,
        "device": device.type,
    }


def run_isolated(name: str, argv: list[str]) -> dict:
    """Measure one variant in a fresh interpreter so that its peak memory is its own."""
    done = subprocess.run(
        [sys.executable, __file__, *argv, "--variant", name],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--sentences", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=257)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--chunk", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    argv = sys.argv[1:]
    args = parser.parse_args(argv)
    if args.variant:
        print(json.dumps(measure(args.variant, args)))
        return
    results = {}
    for name in ("straightforward", "radzero", "radzero_chunked"):
        results[name] = run_isolated(name, argv)
        r = results[name]
        print(
            f"{name:>16}: {r['seconds'] * 1e3:8.1f} ms/step, peak {r['peak_bytes'] / 2**20:8.1f} "
            f"MiB, loss {r['loss']:.4f}",
            flush=True,
        )
    ref = results["straightforward"]
    summary = {
        "shape": {k: getattr(args, k) for k in ("batch", "sentences", "tokens", "dim", "chunk")},
        "device": ref["device"],
        "ms_per_step": {k: round(v["seconds"] * 1e3, 2) for k, v in results.items()},
        "peak_mib": {k: round(v["peak_bytes"] / 2**20, 1) for k, v in results.items()},
        "speedup_vs_straightforward": round(ref["seconds"] / results["radzero"]["seconds"], 3),
        "chunked_speedup_vs_straightforward": round(
            ref["seconds"] / results["radzero_chunked"]["seconds"], 3
        ),
        "memory_ratio_vs_straightforward": round(
            results["radzero"]["peak_bytes"] / ref["peak_bytes"], 3
        ),
        "chunked_memory_ratio_vs_straightforward": round(
            results["radzero_chunked"]["peak_bytes"] / ref["peak_bytes"], 3
        ),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
