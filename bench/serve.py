"""The served application over HTTP: latency and throughput by concurrency, batching against
none, HTTP against the model in-process, and overload.

Everything runs on 127.0.0.1: a local Ray of 2 CPUs, the app deployed as ``serve deploy``
does (``radzero.platform.serve.deploy``), one model replica (autoscaling min = max = 1, 1
CPU) serving the ``radzero-tiny`` architecture (224 px, patch 16, a 2-layer ViT, the offline
MiniLM text encoder), randomly initialised, registered in a registry of its own. Clients are
threads, each with its own ``requests.Session``, sending ``POST /v1/classify`` (multipart: a
224 px phantom PNG, the 6 phantom findings) one after another; the images go round-robin.
A client sends no request after its level's count or time limit; every latency is
``time.perf_counter`` around one request. Every window also reports the CPU milliseconds
per request of each Serve process by role (proxy, ingress, model; ``clients``: this process)
and ``model_busy``, the model replica's CPU seconds per second.

``levels``: throughput (200s per second over the level's window) and p50/p95/p99 latency at
1, 8 and 32 clients, batching on (``max_batch_size`` 16, ``wait_s`` 10 ms).
``batching_speedup``: throughput at 32 clients with that batching over the same app
redeployed with ``max_batch_size`` 1 (a ``user_config`` change: the replica is reconfigured in
place, everything else equal), in alternating rounds (on, off, on, off ...), medians.
``http_overhead``: the median latency of one request at a time through HTTP (batching off, so
no batch wait) over the median of ``radzero.inference.answer_batch`` on the same image with
the same registered model in this process, with as many torch threads as the replica has;
the two alternate. ``in_process``: what batching can gain at most on this model and CPU: the
backbone and the whole answer at batch 1 and per image at batch 16, and the per-query scoring
(text encoder and VL-CABS), which does not batch.
``overload``: a small queue (``max_ongoing_requests`` 4, ``max_queued_requests`` 4,
``retry_after_s`` 1) under a burst of 64 clients (384 requests or 20 s): the statuses
(anything but 200 and 503 is a failure), the fraction of 503s with ``Retry-After``,
``recovery_ratio`` (throughput at 8 clients in the 5 s right after the burst over the 5 s
before it) and ``seconds_to_recover`` (the end of the burst to the first 200 after it).
The last line is one JSON object.

    python bench/serve.py [--images 16 --requests 24 64 128 --ab-requests 96 --level-limit-s 40]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import itertools
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import requests

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ["RAY_AUTH_MODE"] = "disabled"  # Ray on loopback only: nothing else can reach it
os.environ["RAY_SERVE_LOG_TO_STDERR"] = "0"  # Serve's access log stays in Ray's files

ARCHITECTURE = "radzero-tiny"
LEVELS = (1, 8, 32)
AB_CLIENTS = 32
BATCH, WAIT_S = 16, 0.01
MODEL_CPUS = 1.0
OVERLOAD = {"max_ongoing_requests": 4, "max_queued_requests": 4, "retry_after_s": 1.0}
CLIENT_TIMEOUT_S = 120.0
APP = "bench"
# Serve's processes by what they do: the HTTP proxy, the ingress and the model replicas
ROLES = {
    "proxy": "ProxyActor",
    "ingress": f"ServeReplica:{APP}:RadZeroAPI",
    "model": f"ServeReplica:{APP}:RadZeroModel",
}
RUNTIME_ENV = {"env_vars": {"HF_HUB_OFFLINE": "1"}}

_STARTED = time.perf_counter()


def _log(message: str) -> None:
    """A progress line on stderr (stdout ends with the JSON line), with the seconds so far."""
    elapsed = time.perf_counter() - _STARTED
    print(f"[serve benchmark {elapsed:5.0f} s] {message}", file=sys.stderr, flush=True)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One request: when it was sent and answered, its status (0: no HTTP answer) and its
    ``Retry-After`` header."""

    started: float
    ended: float
    status: int
    retry_after: str | None

    @property
    def latency_ms(self) -> float:
        return (self.ended - self.started) * 1000


def _send(session: requests.Session, url: str, image: tuple[str, bytes]) -> Outcome:
    """POST one image and the findings as multipart to ``url``, timed."""
    from radzero.data.phantom.lesions import FINDINGS

    started = time.perf_counter()
    try:
        response = session.post(
            url,
            files={"image": (image[0], image[1], "image/png")},
            data={"findings": list(FINDINGS)},
            timeout=CLIENT_TIMEOUT_S,
        )
        status, retry_after = response.status_code, response.headers.get("Retry-After")
    except requests.RequestException:
        status, retry_after = 0, None
    return Outcome(started, time.perf_counter(), status, retry_after)


def _cpu_s() -> dict[str, float]:
    """CPU seconds used so far by each Serve process of the machine, by role (Ray names its
    processes ``ray::<actor>``), and by this process (the clients), from Linux's /proc."""
    used = dict.fromkeys((*ROLES, "clients"), 0.0)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            stat = (entry / "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        role = next((r for r, name in ROLES.items() if title.startswith(f"ray::{name}")), None)
        if int(entry.name) == os.getpid():
            role = "clients"
        if role:
            fields = stat[stat.rindex(")") + 2 :].split()  # from field 3 (state) on
            used[role] += sum(int(f) for f in fields[11:13]) / os.sysconf("SC_CLK_TCK")
    return used


def _load(
    url: str, images: list[tuple[str, bytes]], clients: int, count: int, limit_s: float
) -> tuple[list[Outcome], dict[str, float]]:
    """``clients`` threads send requests one after another, the n-th overall with image
    ``n % len(images)``, until ``count`` were sent or ``limit_s`` passed since they started
    together; all outcomes, by start time, and the CPU seconds each role used meanwhile."""
    tickets = itertools.count()
    lock = threading.Lock()
    deadline: list[float] = []
    start = threading.Barrier(
        clients, action=lambda: deadline.append(time.perf_counter() + limit_s)
    )

    def client(_: int) -> list[Outcome]:
        outcomes = []
        with requests.Session() as session:
            start.wait()
            while True:
                with lock:
                    ticket = next(tickets)
                if ticket >= count or time.perf_counter() >= deadline[0]:
                    return outcomes
                outcomes.append(_send(session, url, images[ticket % len(images)]))

    cpu = _cpu_s()
    with ThreadPoolExecutor(clients) as pool:
        outcomes = list(itertools.chain.from_iterable(pool.map(client, range(clients))))
    cpu = {role: used - cpu[role] for role, used in _cpu_s().items()}
    return sorted(outcomes, key=lambda outcome: outcome.started), cpu


def _statuses(outcomes: list[Outcome]) -> dict[str, int]:
    return {str(k): v for k, v in sorted(collections.Counter(o.status for o in outcomes).items())}


def _summary(outcomes: list[Outcome], cpu: dict[str, float]) -> dict[str, Any]:
    """Throughput of the 200s over the window (first send to last answer) and their latency
    percentiles; every status's count; each role's CPU milliseconds per request and the
    model replica's CPU seconds per second of the window (``model_busy``)."""
    ok = [o.latency_ms for o in outcomes if o.status == 200]
    window = max(o.ended for o in outcomes) - min(o.started for o in outcomes)
    p50, p95, p99 = np.percentile(ok, [50, 95, 99]) if ok else (None, None, None)
    return {
        "throughput_rps": round(len(ok) / window, 3),
        "p50_ms": None if p50 is None else round(float(p50), 1),
        "p95_ms": None if p95 is None else round(float(p95), 1),
        "p99_ms": None if p99 is None else round(float(p99), 1),
        "requests": len(outcomes),
        "window_s": round(window, 2),
        "statuses": _statuses(outcomes),
        "model_busy": round(cpu["model"] / window, 3),
        "cpu_ms_per_request": {
            role: round(used * 1000 / len(outcomes), 1) for role, used in cpu.items()
        },
    }


def _failures(outcomes: list[Outcome], allowed: set[int]) -> dict[str, int]:
    return _statuses([o for o in outcomes if o.status not in allowed])


def _register(root: Path) -> str:
    """``create_model(ARCHITECTURE)`` (seed 0) saved and registered as ``bench@best``."""
    import torch

    from radzero import registry
    from radzero.model.radzero import create_model

    torch.manual_seed(0)
    folder = create_model(ARCHITECTURE).save_pretrained(str(root / "model"))
    registry.register(
        folder, "bench", {"architecture": ARCHITECTURE}, str(root / "registry"), ("best",)
    )
    return "bench@best"


def _config(root: Path, port: int, max_batch_size: int, **changes: Any) -> Any:
    """The benchmark's app: one model replica of 1 CPU, a queue that refuses nothing."""
    from radzero.platform.serve import ServeJobConfig
    from radzero.platform.serve.config import AutoscalingSection, BatchingSection

    fields: dict[str, Any] = {
        "model": "bench@best",
        "registry": str(root / "registry"),
        "name": APP,
        "port": port,
        "request_timeout_s": CLIENT_TIMEOUT_S,
        "batching": BatchingSection(max_batch_size=max_batch_size, wait_s=WAIT_S),
        "autoscaling": AutoscalingSection(min_replicas=1, max_replicas=1),
        "max_ongoing_requests": 64,
        "max_queued_requests": 4096,
        "model_cpus": MODEL_CPUS,
        **changes,
    }
    return ServeJobConfig(**fields)


def _deploy(config: Any, label: str) -> dict[str, Any]:
    """Deploy ``config`` and wait until it runs; the concurrency limits Serve applied to each
    deployment."""
    from ray.serve.context import _get_global_client

    from radzero.platform.serve import deploy
    from radzero.platform.serve.app import INGRESS, MODEL

    started = time.perf_counter()
    deploy(config, RUNTIME_ENV)
    details = _get_global_client().get_serve_details()
    deployments = details["applications"][config.name]["deployments"]
    limits = {
        name: {
            key: deployments[name]["deployment_config"][key]
            for key in ("max_ongoing_requests", "max_queued_requests")
        }
        for name in (MODEL, INGRESS)
    }
    _log(f"deployed {label} in {time.perf_counter() - started:.1f} s: {limits}")
    return limits


def _replica_threads() -> int:
    """The torch threads of a Ray worker holding ``MODEL_CPUS`` CPUs, as the replica does."""
    import ray

    def threads() -> int:
        import torch

        return torch.get_num_threads()

    return ray.get(ray.remote(num_cpus=MODEL_CPUS)(threads).remote(), timeout=120)


def _median_s(work: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _in_process(
    root: Path, url: str, images: list[tuple[str, bytes]], threads: int, repeats: int
) -> dict[str, Any]:
    """One request at a time through HTTP alternating with ``answer_batch`` in this process
    on the same image; then the model's costs at batch 1 and 16."""
    import torch

    from radzero.data.images import read_image
    from radzero.data.phantom.lesions import FINDINGS
    from radzero.inference import Query, answer_batch
    from radzero.model.radzero import RadZero

    torch.set_num_threads(threads)
    model = RadZero.from_pretrained("bench@best", registry=str(root / "registry")).eval()
    queries = [Query("classify", data, list(FINDINGS), name=name) for name, data in images]
    http, local = [], []
    with requests.Session() as session:
        for i in range(2):  # warm-up, both sides
            _send(session, url, images[i])
            answer_batch(model, [queries[i]])
        for i in range(repeats):
            image, query = images[i % len(images)], queries[i % len(images)]
            outcome = _send(session, url, image)
            if outcome.status != 200:
                raise RuntimeError(f"a request at 1 client got {outcome.status}")
            http.append(outcome.latency_ms)
            started = time.perf_counter()
            answer_batch(model, [query])
            local.append((time.perf_counter() - started) * 1000)
    batch = (queries * BATCH)[:BATCH]
    pixels = torch.stack([model.preprocess(read_image(q.image, q.name)) for q in batch])
    with torch.no_grad():
        tokens = model.encode_image(pixels[:1])
        costs_ms = {
            "answer_1_ms": statistics.median(local),
            "answer_16_per_image_ms": _median_s(lambda: answer_batch(model, batch), 3)
            * 1000
            / BATCH,
            "backbone_1_ms": _median_s(lambda: model.encode_image(pixels[:1]), 5) * 1000,
            "backbone_16_per_image_ms": _median_s(lambda: model.encode_image(pixels), 3)
            * 1000
            / BATCH,
            "scoring_per_query_ms": _median_s(lambda: model.classify(FINDINGS, tokens=tokens), 5)
            * 1000,
        }
    http_ms = statistics.median(http)
    return {
        "http_overhead": {
            "ratio": round(http_ms / costs_ms["answer_1_ms"], 3),
            "http_p50_ms": round(http_ms, 1),
            "in_process_p50_ms": round(costs_ms["answer_1_ms"], 1),
            "requests": repeats,
        },
        "in_process": {
            **{key: round(value, 1) for key, value in costs_ms.items()},
            "batch_gain": round(costs_ms["answer_1_ms"] / costs_ms["answer_16_per_image_ms"], 3),
            "torch_threads": threads,
        },
    }


def _overload(url: str, images: list[tuple[str, bytes]], args: argparse.Namespace) -> dict:
    """8 clients for 5 s, a burst of ``args.burst_clients``, 8 clients for 5 s right after."""
    window = args.recovery_window_s
    before, before_cpu = _load(url, images, 8, 10**6, window)
    _log(f"before the burst: {_summary(before, before_cpu)}")
    burst, burst_cpu = _load(
        url, images, args.burst_clients, args.burst_requests, args.burst_limit_s
    )
    burst_end = max(o.ended for o in burst)
    after, after_cpu = _load(url, images, 8, 10**6, window)
    summaries = {
        "burst": _summary(burst, burst_cpu),
        "before": _summary(before, before_cpu),
        "after": _summary(after, after_cpu),
    }
    refused = [o for o in burst if o.status == 503]
    first_ok = min((o.ended for o in after if o.status == 200), default=None)
    result = {
        "statuses": _statuses(burst),
        "burst": summaries["burst"],
        "retry_after_fraction": (
            round(sum(bool(o.retry_after) for o in refused) / len(refused), 3) if refused else None
        ),
        "retry_after_values": sorted({o.retry_after for o in refused if o.retry_after}),
        "before": summaries["before"],
        "after": summaries["after"],
        "recovery_ratio": round(
            summaries["after"]["throughput_rps"] / summaries["before"]["throughput_rps"], 3
        ),
        "seconds_to_recover": None if first_ok is None else round(first_ok - burst_end, 3),
        "failures": _failures(before + burst + after, {200, 503}),
    }
    _log(f"burst: {result['statuses']}, after: {result['after']}")
    return result


def _notes(result: dict[str, Any], limits: dict[str, Any]) -> list[str]:
    """What the figures depend on, from what was measured."""
    from radzero.platform.serve.app import INGRESS, MODEL

    notes = []
    ingress = limits[INGRESS]["max_ongoing_requests"]
    if ingress < BATCH:
        notes.append(
            f"the ingress deployment ran with max_ongoing_requests {ingress} (Ray Serve's "
            "default: deployment_options sets none for it) on its one replica, so at most "
            f"{ingress} requests reach the model at once and no batch holds more than {ingress}, "
            f"whatever batching.max_batch_size ({BATCH}) and the model's max_ongoing_requests"
        )
    levels = result["levels"]
    crowded, fewer = levels[str(LEVELS[-1])], levels[str(LEVELS[-2])]
    if ingress < LEVELS[-1] and crowded["throughput_rps"] < fewer["throughput_rps"]:
        from ray.serve._private.constants import RAY_SERVE_ROUTER_RETRY_MAX_BACKOFF_S

        notes.append(
            f"{LEVELS[-1]} clients got {crowded['throughput_rps']} rps against "
            f"{fewer['throughput_rps']} at {LEVELS[-2]}, the model replica busy "
            f"{crowded['model_busy']} of the time against {fewer['model_busy']}: the requests "
            f"beyond the {ingress} the ingress takes wait in the proxy's request router, which "
            "tries them again with exponential backoff of up to "
            f"{RAY_SERVE_ROUTER_RETRY_MAX_BACKOFF_S:g} s (RAY_SERVE_ROUTER_RETRY_MAX_BACKOFF_S), "
            "so a freed slot often stays empty; batching_speedup is measured in that state"
        )
    local = result["in_process"]
    if result["batching_speedup"] < 3:
        notes.append(
            f"batching_speedup {result['batching_speedup']} < 3: in this process a batch of "
            f"{BATCH} costs {local['answer_16_per_image_ms']} ms per image against "
            f"{local['answer_1_ms']} ms alone (batch_gain {local['batch_gain']}: what batching "
            "saves in the model's own work on this CPU); the backbone costs "
            f"{local['backbone_16_per_image_ms']} ms per image at {BATCH} against "
            f"{local['backbone_1_ms']} ms alone, and each query's scoring, "
            f"{local['scoring_per_query_ms']} ms, does not batch (answer_batch scores each "
            "query on its own)"
        )
    overload = result["overload"]
    small = result["settings"]["overload"]["deployed_limits"]
    reach = small[MODEL]["max_ongoing_requests"] + small[MODEL]["max_queued_requests"]
    if small[INGRESS]["max_ongoing_requests"] < reach:
        notes.append(
            f"the burst got {overload['statuses'].get('503', 0)} 503s of "
            f"{overload['burst']['requests']}: the ingress takes "
            f"{small[INGRESS]['max_ongoing_requests']} requests at a time and its own queue "
            f"(max_queued_requests {small[INGRESS]['max_queued_requests']}, unbounded) is "
            "where the rest wait, in the proxy, so the model's queue "
            f"(max_ongoing_requests + max_queued_requests = {reach} per caller) fills at most "
            "for an instant: an overload is answered by latency (burst p50 "
            f"{overload['burst']['p50_ms']} ms), not by 503 with Retry-After"
        )
    notes.append(
        "2 CPUs shared with other work (load average "
        f"{result['load_average'][0]} at the start, {result['load_average'][1]} at the end): "
        "absolute figures are contended, the ratios were measured side by side; the client "
        "threads run on the same 2 CPUs as the server"
    )
    return notes


def main() -> None:
    """Register the model, deploy, run the phases, print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16, help="phantoms at 224 px, round-robin")
    parser.add_argument(
        "--requests", type=int, nargs=3, default=[24, 64, 128], help="per level: 1, 8, 32 clients"
    )
    parser.add_argument("--level-limit-s", type=float, default=40, help="time limit per level")
    parser.add_argument("--ab-requests", type=int, default=96, help="per batching round")
    parser.add_argument("--ab-limit-s", type=float, default=30, help="time limit per round")
    parser.add_argument("--ab-rounds", type=int, default=3, help="rounds of each, alternating")
    parser.add_argument("--http-requests", type=int, default=24, help="for http_overhead")
    parser.add_argument("--burst-clients", type=int, default=64)
    parser.add_argument("--burst-requests", type=int, default=384)
    parser.add_argument("--burst-limit-s", type=float, default=20)
    parser.add_argument("--recovery-window-s", type=float, default=5)
    args = parser.parse_args()

    import ray
    from ray import serve

    from radzero.data import phantom
    from radzero.data.phantom.lesions import FINDINGS
    from radzero.platform.session import free_port, start_local_ray

    wall = time.perf_counter()
    load_start = os.getloadavg()[0]
    with (
        tempfile.TemporaryDirectory() as tmp,
        tempfile.TemporaryDirectory(prefix="ray-") as ray_tmp,
    ):
        root = Path(tmp)
        phantom.write_dataset(root / "raw", args.images, size=224, seed=0)
        images = [(p.name, p.read_bytes()) for p in sorted((root / "raw" / "images").glob("*.png"))]
        reference = _register(root)
        _log(f"{len(images)} phantoms at 224 px; {ARCHITECTURE} registered as {reference}")
        os.environ["RAY_TMPDIR"] = ray_tmp
        start_local_ray(
            num_cpus=2, temp_dir=ray_tmp, env=RUNTIME_ENV["env_vars"], logging_level="ERROR"
        )
        port = free_port()
        url = f"http://127.0.0.1:{port}/v1/classify"
        batched, unbatched = _config(root, port, BATCH), _config(root, port, 1)
        try:
            threads = _replica_threads()  # before the replica holds the CPUs
            limits = _deploy(batched, f"batching {BATCH}")
            _load(url, images, 8, 16, args.level_limit_s)  # warm-up
            levels, phase_a = {}, []
            for clients, count in zip(LEVELS, args.requests, strict=True):
                outcomes, cpu = _load(url, images, clients, count, args.level_limit_s)
                phase_a += outcomes
                levels[str(clients)] = _summary(outcomes, cpu)
                _log(f"{clients} clients: {levels[str(clients)]}")

            rounds: dict[str, list[dict[str, Any]]] = {"batched": [], "unbatched": []}
            ab = []
            for label, config in (("batched", batched), ("unbatched", unbatched)) * args.ab_rounds:
                _deploy(config, label)
                _load(url, images, 8, 16, args.ab_limit_s)  # warm-up after the reconfigure
                outcomes, cpu = _load(url, images, AB_CLIENTS, args.ab_requests, args.ab_limit_s)
                ab += outcomes
                rounds[label].append(_summary(outcomes, cpu))
                _log(f"{label}, {AB_CLIENTS} clients: {rounds[label][-1]}")
            throughput = {
                label: statistics.median(r["throughput_rps"] for r in summaries)
                for label, summaries in rounds.items()
            }

            # the unbatched app is deployed: one request at a time meets no batch wait
            measured = _in_process(root, url, images, threads, args.http_requests)
            _log(f"HTTP against in-process: {measured}")

            overload_limits = _deploy(_config(root, port, 4, **OVERLOAD), "a small queue")
            _load(url, images, 4, 8, args.level_limit_s)  # warm-up
            overload = _overload(url, images, args)
        finally:
            serve.shutdown()
            ray.shutdown()

    result = {
        "architecture": ARCHITECTURE,
        "image_size": 224,
        "images": len(images),
        "levels": levels,
        "batching_speedup": round(throughput["batched"] / throughput["unbatched"], 3),
        "batching": {
            "clients": AB_CLIENTS,
            "batched_rps": throughput["batched"],
            "unbatched_rps": throughput["unbatched"],
            "rounds": rounds,
        },
        **measured,
        "overload": overload,
        "failures": {
            "levels": _failures(phase_a, {200}),
            "batching": _failures(ab, {200}),
            "overload": overload["failures"],
        },
        "settings": {
            "cpus": 2,
            "model_replicas": 1,
            "model_cpus": MODEL_CPUS,
            "replica_torch_threads": threads,
            "max_batch_size": BATCH,
            "batch_wait_s": WAIT_S,
            "requests_per_level": dict(zip(map(str, LEVELS), args.requests, strict=True)),
            "level_limit_s": args.level_limit_s,
            "ab_requests": args.ab_requests,
            "ab_rounds": args.ab_rounds,
            "deployed_limits": limits,
            "overload": {
                **OVERLOAD,
                "burst_clients": args.burst_clients,
                "deployed_limits": overload_limits,
            },
            "findings_per_request": len(FINDINGS),
        },
        "load_average": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        "wall_s": round(time.perf_counter() - wall, 1),
    }
    result["notes"] = _notes(result, limits)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
