"""The demo end to end at a small scale, its terminal, its report, a failing stage and a rerun."""

from __future__ import annotations

import csv
import io
import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from radzero import cli, registry
from radzero.data.images import load_image
from radzero.data.phantom import FINDINGS
from radzero.model import RadZero
from radzero.platform.console import Console, StageFailed
from radzero.platform.demo import STAGES, demo_config, run_demo

ROOT = Path(__file__).resolve().parents[1]


def _small(out: Path, **overrides) -> dict:
    return {
        "out": str(out),
        "count": 1000,
        "optim": {"epochs": 6, "lr": 2e-3},
        "rows": ["(b)", "(d)"],
        "figure_examples": 3,
        "queries": 3,
    } | overrides


@pytest.mark.slow
def test_the_demo_runs_every_stage_learns_serves_and_reports(ray_local, tmp_path) -> None:
    terminal = io.StringIO()
    summary = run_demo(demo_config(_small(tmp_path)), Console(terminal, len(STAGES)))

    lines = terminal.getvalue().splitlines()
    done = [line for line in lines if re.match(r"\[\d/9\] \w+ +done in \d+ s", line)]
    assert [line.split()[1] for line in done] == list(STAGES), lines
    assert any(re.search(r"\] \d+/1000 images", line) for line in lines)  # a bar

    # The sweep trained rows (b) and (d) side by side; the winner was registered.
    trials = summary["trials"]
    assert sorted(t["row"] for t in trials) == ["(b)", "(d)"]
    assert all(t["status"] == "finished" and t["epochs"] == 6 for t in trials)
    registered = summary["sweep"]["registered"]
    assert (registered["name"], registered["version"]) == ("radzero-demo", 1)
    card = registry.read_card("radzero-demo@best", root=tmp_path / "registry")
    assert card["lineage"]["sweep"]["trial"] == summary["sweep"]["winner"]

    # The winner learned: zero-shot AUC well above chance (0.5), and for most positives the
    # map's peak falls in the lesion's box (about 0.6 at this scale; chance is about 0.07).
    metrics = json.loads((tmp_path / "phantom" / "metrics.json").read_text())
    assert summary["headline"]["auc"] == metrics["auc"]["macro"] > 0.75, metrics["auc"]
    pointing = metrics["pointing"]
    assert pointing["accuracy"] > 0.5 > 0.2 > pointing["chance"], pointing
    assert metrics["training"]["best"]["epoch"] >= 1

    # The service answered as the registered model does in the library.
    model = RadZero.from_pretrained(registered["uri"]).eval()
    served = summary["served"]
    assert len(served) == 3
    for answer in served:
        image = load_image(tmp_path / "phantoms" / answer["image"], model.preprocess)[None]
        with torch.no_grad():
            expected = model.classify(list(FINDINGS), images=image)[0].tolist()
        got = [answer["probabilities"][name] for name in FINDINGS]
        assert np.allclose(got, expected, atol=1e-5), (got, expected)
        for grounded in answer["grounding"]:
            with Image.open(tmp_path / grounded["overlay"]) as overlay:
                assert overlay.format == "PNG" and overlay.size[0] > 100
    with pytest.raises(urllib.error.URLError):  # shut down at the end
        urllib.request.urlopen(served_url(summary), timeout=5)

    # The report links every stage's figures, and each link resolves inside the folder.
    report = (tmp_path / "report.md").read_text()
    for heading in ("## Stages", "## The sweep", "## The winner", "## Served"):
        assert heading in report
    links = re.findall(r"\]\(([^)]+)\)", report)
    assert len(links) >= 8
    for link in links:
        assert (tmp_path / link).is_file(), link
    for figure in ("training.png", "overlays.png", "roc.png", "ablation.png"):
        assert any(link.endswith(figure) for link in links), figure

    # A rerun continues from what finished: same phantoms, the finished sweep read back.
    again = io.StringIO()
    rerun = run_demo(demo_config(_small(tmp_path)), Console(again, len(STAGES)))
    assert f"done in 0 s: reusing {tmp_path / 'phantoms'}" in again.getvalue()
    assert rerun["sweep"]["registered"]["version"] == 1
    assert rerun["headline"] == summary["headline"]


def served_url(summary: dict) -> str:
    stage = next(s for s in summary["stages"] if s["name"] == "serve")
    return re.search(r"http://[\d.:]+/", stage["result"]).group(0) + "healthz"


def test_a_failing_stage_says_which_why_and_where_the_logs_are(ray_local, tmp_path, capfd):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "data").write_text("not a folder")  # where preprocessing must write
    code = cli.main(
        [
            "demo",
            "--config",
            str(ROOT / "configs/local.yaml"),
            "--out",
            str(out),
            "--set",
            "count=60",
        ]
    )
    assert code == 1
    terminal = capfd.readouterr().err
    assert "[1/9] phantoms   done in" in terminal
    assert "[2/9] preprocess FAILED:" in terminal
    assert f"logs: {out / 'logs'}" in terminal
    assert "stage preprocess failed after" in terminal
    assert "A rerun continues from the stages that finished." in terminal
    assert "Traceback" not in terminal
    log = (out / "logs" / "demo.log").read_text()
    assert "Traceback" in log  # the whole story is in the log
    with (out / "phantoms" / "manifest.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 60  # the finished stage's work is kept


def test_the_console_draws_quarters_off_a_terminal_and_names_a_failed_stage() -> None:
    stream = io.StringIO()
    console = Console(stream, 2)
    with console.stage("images", 8, "images") as stage:
        for done in range(1, 9):
            stage.update(done)
        stage.result = "8 images -> somewhere"
    failed = r"stage boom failed after 0 s: disk full \(logs: L\)"
    with pytest.raises(StageFailed, match=failed), console.stage("boom", logs="L"):
        raise OSError("no space\ndisk full")
    lines = stream.getvalue().splitlines()
    bars = [line for line in lines if line.startswith("[1/2] images     [")]
    counts = [re.search(r"\] (\d+/8) images", bar).group(1) for bar in bars]
    assert counts == ["0/8", "2/8", "4/8", "6/8", "8/8"]
    assert lines[len(bars)] == "[1/2] images     done in 0 s: 8 images -> somewhere"
    assert lines[-2:] == ["[2/2] boom       FAILED: disk full", "  logs: L"]
    assert [s["name"] for s in console.finished] == ["images"]
