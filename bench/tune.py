"""The Ray Tune sweep: from the feature cache against from images, one trial against the plain
loop, and two trials at a time against one.

Every sweep here is a grid of the sweep job (``radzero.platform.tune``) on phantoms at 224 px,
2 CPUs, each trial one Train worker (``trial_cpus`` 0.25, ``cpus_per_worker`` 0.25, as
configs/local.yaml's tune section), each sweep in a fresh ``out``. What is timed is the
training part of a sweep, ``driver.ensure_caches`` then ``driver._run`` (the Tune fit): the
test-split scoring that ``sweep`` runs afterwards is left out on every side. Beside each wall
time, ``cpu_s``: the CPU seconds that this process and its Ray processes used meanwhile, and
the ``*_cpu`` ratios of them, which hold up better than wall times when other work shares the
machine.

``sweep_speedup``: 4 trials (similarity x multi_positive), ``--speedup-epochs`` each, two at a
time, with a randomly initialised ViT-B/14 backbone (the align and text settings of
``radzero-tiny-local``): from images (the frozen backbone on every training and validation
batch) over from features, where the sweep computes the cache itself and its cost counts (the
cache does not exist before; it runs 2 actors of 0.5 CPU, as the image side runs 2 trials).
``trial_overhead``: one trial (a one-point sweep from the tiny backbone's cache, computed
beforehand and not timed) over the plain loop (``radzero.model.training.fit``, the same
model, epochs, batch and torch threads as the trial's worker) on the same tokens held in
memory; the plain side times building the model and ``fit``, its read of the tokens is
reported apart. The trial also validates and checkpoints every epoch, which ``fit`` does not.
``parallel_speedup``: the 4 tiny trials one at a time over two at a time. Every sweep reports
where its time went, from the time each worker's steps end: ``startup_s`` (the Tune fit's
start to the end of the first step), ``step_s`` (one step within an epoch; the plain loop's is
``plain_step_s``), ``steps_s`` (a trial's first step's end to its last, mean),
``epoch_gap_s`` (an epoch's last step to the next epoch's first: validation, checkpoint, the
next read, and one step; mean), ``end_s`` (the last step to the end of the fit) and, one at a
time, ``between_trials_s`` (a trial's last step to the end of the next one's first, mean).
The last line is one JSON object.

    python bench/tune.py [--images 120 --batch-size 32 --speedup-epochs 2 --overhead-epochs 8
                          --parallel-epochs 2 --speedup-backbone vit-b]
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ["RAY_AUTH_MODE"] = "disabled"  # Ray on loopback only: nothing else can reach it

# bench/train.py (this script's folder is on sys.path): its backbone and its plain loop
from train import VIT_B, _load_train_split, _run_plain

GRID = {"similarity": ["cos", "dot"], "multi_positive": [True, False]}

_STARTED = time.perf_counter()


def _log(message: str) -> None:
    """A progress line on stderr (stdout ends with the JSON line), with the seconds so far."""
    elapsed = time.perf_counter() - _STARTED
    print(f"[tune benchmark {elapsed:5.0f} s] {message}", file=sys.stderr, flush=True)


def _label(point: dict[str, Any]) -> str:
    """A file name for one trial's point."""
    return "_".join(f"{k}={v}" for k, v in sorted(point.items())) or "base"


class StepStamps:
    """The sweeps' ``on_step``: every step's time and torch threads, one file per trial."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __call__(self, point: dict[str, Any], step: int, rank: int) -> None:
        import torch

        with (self.folder / f"{_label(point)}.txt").open("a") as out:
            out.write(f"{step} {time.time()} {torch.get_num_threads()}\n")


def _tree_cpu_s() -> float:
    """CPU seconds used so far by this process and its descendants (Ray's processes, with the
    ones they have reaped), from Linux's /proc: what a sweep costs whatever else the machine
    runs."""
    parents, used = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # from field 3 (state) on
        pid = int(entry.name)
        parents[pid] = int(fields[1])
        used[pid] = sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    tree, frontier = set(), [os.getpid()]
    while frontier:
        pid = frontier.pop()
        tree.add(pid)
        frontier += [child for child, parent in parents.items() if parent == pid]
    return sum(used.get(pid, 0) for pid in tree) / os.sysconf("SC_CLK_TCK")


def _start_ray(temp_dir: str) -> None:
    """A local Ray of 2 CPUs on loopback, as the tests' session fixture starts it: the
    dashboard on a known port named in RAY_API_SERVER_ADDRESS, so that Ray Train frees a
    finished trial's workers (docs/tuning.md), and Ray's files in ``temp_dir``."""
    import ray

    from radzero.platform.session import start_local_ray

    os.environ["RAY_TMPDIR"] = temp_dir
    start_local_ray(
        num_cpus=2, temp_dir=temp_dir, env={"HF_HUB_OFFLINE": "1"}, logging_level="ERROR"
    )
    ray.data.DataContext.get_current().enable_progress_bars = False


def _config(
    root: Path,
    name: str,
    source: str,
    epochs: int,
    space: dict[str, Any],
    concurrent: int,
    args: argparse.Namespace,
    backbone: dict[str, Any] | None = None,
) -> Any:
    """A sweep of ``radzero-tiny-local`` (or with ``backbone``) trials, its out under
    ``root/sweeps/name``; no registry, no tracking."""
    from radzero.config import from_dict
    from radzero.platform.tune import TuneJobConfig

    vision = {"hf_config": backbone, "image_size": backbone["image_size"]} if backbone else {}
    return from_dict(
        TuneJobConfig,
        {
            "name": name,
            "out": str(root / "sweeps" / name),
            "data": str(root / "data"),
            "benchmark": "phantom",
            "benchmark_root": str(root / "raw"),
            "mode": "grid",
            "space": space,
            "max_concurrent_trials": concurrent,
            "trial_cpus": 0.25,
            "features_job": {"batch_size": 16, "actors": 2, "num_cpus": 0.5},
            "register": {"name": None},
            "tracking": {"mlflow_uri": None},
            "train": {
                "model": "radzero-tiny-local",
                "source": source,
                "model_overrides": {"vision": vision} if vision else {},
                "optim": {
                    "epochs": epochs,
                    "batch_size": args.batch_size,
                    "lr": 1e-3,
                    "warmup_steps": 10,
                    "mask_false_negatives": True,
                    "seed": 0,
                },
                "checkpoint": {"metric": "val_auc", "mode": "max", "keep": 1},
                "scaling": {"num_workers": 1, "cpus_per_worker": 0.25},
            },
        },
    )


def _cache_path(config: Any) -> Path:
    """Where the sweep's trials read their tokens (at the base job's input size)."""
    from radzero.platform.features import cache_location

    vision = config.base_job().model_config().vision
    return Path(cache_location(config.data, config.data, vision, int(vision.image_size)))


def _sweep(config: Any, stamps: Path) -> dict[str, Any]:
    """The training part of ``sweep(config)``, timed: its caches, then the Tune fit; with
    where the time went (:func:`_phases`)."""
    from radzero.platform.tune import driver

    stamps.mkdir(parents=True)
    started, cpu = time.time(), _tree_cpu_s()
    driver.ensure_caches(config)
    cached = time.time()
    grid = driver._run(config, StepStamps(stamps))
    ended, cpu = time.time(), _tree_cpu_s() - cpu
    errors = [result.error for result in grid if result.error]
    if errors:
        raise RuntimeError(f"sweep {config.name}: a trial failed: {errors[0]}") from errors[0]
    history = Path(config.trials_path()) / Path(grid[0].path).name / "history.json"
    steps_per_epoch = json.loads(history.read_text())[0]["step"]
    timing = {
        "wall_s": ended - started,
        "cache_s": cached - started,
        "fit_s": ended - cached,
        "cpu_s": cpu,
    } | _phases(stamps, steps_per_epoch, cached, ended, config.max_concurrent_trials == 1)
    _log(
        f"sweep {config.name}: {len(grid)} trials in {timing['wall_s']:.0f} s "
        f"(caches {timing['cache_s']:.0f} s; {cpu:.0f} CPU s), "
        f"start-up {timing['startup_s']:.1f} s, steps {timing['steps_s']:.1f} s a trial, "
        f"{timing['epoch_gap_s']:.1f} s between epochs"
    )
    return timing


def _phases(
    stamps: Path, steps_per_epoch: int, started: float, ended: float, sequential: bool
) -> dict[str, Any]:
    """Where a fit's time went, from the step times of each trial (``stamps``' files)."""
    trials = []
    threads = set()
    for path in stamps.glob("*.txt"):
        rows = [line.split() for line in path.read_text().splitlines()]
        times = [float(t) for _, t, _ in sorted(rows, key=lambda r: int(r[0]))]
        threads |= {int(n) for *_, n in rows}
        trials.append(times)
    trials.sort(key=lambda times: times[0])
    epoch_gaps = [
        times[k] - times[k - 1]
        for times in trials
        for k in range(steps_per_epoch, len(times), steps_per_epoch)
    ]
    in_epoch = [
        times[k] - times[k - 1]
        for times in trials
        for k in range(1, len(times))
        if k % steps_per_epoch
    ]
    timing = {
        "startup_s": trials[0][0] - started,
        "steps_s": statistics.fmean(times[-1] - times[0] for times in trials),
        "step_s": statistics.fmean(in_epoch),
        "epoch_gap_s": statistics.fmean(epoch_gaps) if epoch_gaps else None,
        "end_s": ended - max(times[-1] for times in trials),
        "worker_threads": sorted(threads),
    }
    if sequential and len(trials) > 1:
        gaps = [after[0] - before[-1] for before, after in itertools.pairwise(trials)]
        timing["between_trials_s"] = statistics.fmean(gaps)
    return timing


def _rounded(timing: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in timing.items()}


def _sweep_speedup(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """4 trials from the feature cache (computed by the sweep) and from images."""
    backbone = {"vit-b": VIT_B, "tiny": None}[args.speedup_backbone]
    runs = {}
    for source in ("features", "images"):
        config = _config(
            root, f"speedup-{source}", source, args.speedup_epochs, GRID, 2, args, backbone
        )
        if source == "features" and _cache_path(config).exists():
            raise RuntimeError(f"the feature cache {_cache_path(config)} exists already")
        _log(f"sweep from {source}, {args.speedup_backbone} backbone ...")
        runs[source] = _sweep(config, root / "stamps" / config.name)
    return runs


def _trial_overhead(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One trial through Tune and Train against ``fit`` on the same tokens."""
    from radzero.platform.tune import driver

    config = _config(root, "overhead", "features", args.overhead_epochs, {}, 1, args)
    driver.ensure_caches(config)  # the tiny backbone's cache, not timed
    _log(f"one trial, {args.overhead_epochs} epochs ...")
    trial = _sweep(config, root / "stamps" / config.name)
    job = config.trial_job({}, name="plain")
    started = time.perf_counter()
    tokens, sentences = _load_train_split(job)
    read_s = time.perf_counter() - started
    threads = trial["worker_threads"]
    if len(threads) != 1:
        raise RuntimeError(f"the trial's worker ran with {threads} torch threads")
    started, cpu = time.perf_counter(), time.process_time()
    history = _run_plain(job, tokens, sentences, threads[0])
    plain_s, plain_cpu_s = time.perf_counter() - started, time.process_time() - cpu
    _log(f"plain loop: {plain_s:.1f} s ({args.overhead_epochs} epochs), tokens read {read_s:.1f} s")
    return {
        "trial": trial,
        "plain_s": plain_s,
        "plain_cpu_s": plain_cpu_s,
        "plain_read_s": read_s,
        "plain_history": history,
    }


def main() -> None:
    """Generate phantoms, preprocess them, run the three comparisons, print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=120, help="phantoms at 224 px (70%% train)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per step")
    parser.add_argument(
        "--speedup-epochs", type=int, default=2, help="epochs per trial, sweep_speedup"
    )
    parser.add_argument(
        "--speedup-backbone",
        choices=("vit-b", "tiny"),
        default="vit-b",
        help="sweep_speedup's backbone (tiny: a quick check)",
    )
    parser.add_argument(
        "--overhead-epochs", type=int, default=8, help="epochs of the trial, trial_overhead"
    )
    parser.add_argument(
        "--parallel-epochs", type=int, default=2, help="epochs per trial, parallel_speedup"
    )
    args = parser.parse_args()

    import ray

    from radzero.data import phantom
    from radzero.platform.preprocess import PreprocessJobConfig, preprocess

    logging.basicConfig(level=logging.WARNING, format="[%(asctime)s] %(message)s")
    logging.getLogger("radzero.tune").setLevel(logging.INFO)
    wall = time.perf_counter()
    with (
        tempfile.TemporaryDirectory() as tmp,
        tempfile.TemporaryDirectory(prefix="ray-") as ray_tmp,
    ):
        root = Path(tmp)
        phantom.write_dataset(root / "raw", args.images, size=224, seed=0)
        _start_ray(ray_tmp)
        prepared = preprocess(
            str(root / "raw"), str(root / "data"), PreprocessJobConfig(resolutions=[224])
        )
        _log(f"{args.images} phantoms at 224 px, preprocessed: {prepared['splits']}")

        speedup = _sweep_speedup(root, args)
        overhead = _trial_overhead(root, args)
        parallel = {}
        for concurrent in (2, 1):
            config = _config(
                root,
                f"parallel-{concurrent}",
                "features",
                args.parallel_epochs,
                GRID,
                concurrent,
                args,
            )
            _log(f"4 trials, {concurrent} at a time ...")
            parallel[concurrent] = _sweep(config, root / "stamps" / config.name)
        ray.shutdown()

    features, images = speedup["features"], speedup["images"]
    trial = overhead["trial"]
    result = {
        "images": args.images,
        "train_images": prepared["splits"]["train"],
        "batch_size": args.batch_size,
        "cpus": 2,
        "sweep_speedup": round(images["wall_s"] / features["wall_s"], 3),
        "sweep_speedup_cpu": round(images["cpu_s"] / features["cpu_s"], 3),
        "sweep_backbone": args.speedup_backbone,
        "sweep_epochs": args.speedup_epochs,
        "sweep_features_s": round(features["wall_s"], 1),
        "sweep_features_cache_s": round(features["cache_s"], 1),
        "sweep_images_s": round(images["wall_s"], 1),
        "sweep_features": _rounded(features),
        "sweep_images": _rounded(images),
        "trial_overhead": round(trial["fit_s"] / overhead["plain_s"], 3),
        "trial_overhead_cpu": round(trial["cpu_s"] / overhead["plain_cpu_s"], 3),
        "overhead_epochs": args.overhead_epochs,
        "trial_s": round(trial["fit_s"], 1),
        "plain_s": round(overhead["plain_s"], 1),
        "plain_cpu_s": round(overhead["plain_cpu_s"], 1),
        "plain_read_s": round(overhead["plain_read_s"], 2),
        "trial": _rounded(trial),
        "plain_step_s": round(
            statistics.fmean(1 / row["in_epoch_steps_per_s"] for row in overhead["plain_history"]),
            3,
        ),
        "plain_steps_per_s_per_epoch": [
            round(row["steps_per_s"], 2) for row in overhead["plain_history"]
        ],
        "parallel_speedup": round(parallel[1]["fit_s"] / parallel[2]["fit_s"], 3),
        "parallel_epochs": args.parallel_epochs,
        "parallel_1_s": round(parallel[1]["fit_s"], 1),
        "parallel_2_s": round(parallel[2]["fit_s"], 1),
        "parallel_1": _rounded(parallel[1]),
        "parallel_2": _rounded(parallel[2]),
        "wall_s": round(time.perf_counter() - wall, 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
