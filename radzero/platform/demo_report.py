"""The demo's ``report.md``: every stage's figures on one page (docs/architecture.md).

Links point inside the demo's folder: the sweep's ablation table and figure, the winner's
training curves, the evaluation's ROC, maps and pointing figures, and the service's answers
with their overlays, so the folder can be opened, copied or published as it is.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

from radzero import storage


def trial_row(record: dict) -> dict[str, Any]:
    """A sweep trial as the summary keeps it: row, parameters, status, validation and test."""
    return {k: record.get(k) for k in ("trial", "row", "params", "status", "epochs", "val_auc")} | {
        "test": record.get("test")
    }


def png_bytes(encoded: str) -> bytes:
    """An overlay the service sent (base64 PNG, or a ``data:`` URL of one)."""
    return base64.b64decode(encoded.partition(",")[2] if encoded.startswith("data:") else encoded)


def write(out: Path, summary: dict, metrics: dict, swept: dict) -> Path:
    """Write ``out/report.md`` and return its path."""
    lines = [
        "# RadZero demo",
        "",
        f"Every stage of the platform on phantoms, in {summary['seconds']:.0f} s "
        f"(`radzero demo`; the terminal's log is `logs/demo.log`).",
        "",
        *_stages(summary.get("stages") or []),
        *_sweep(out, swept),
        *_evaluation(out, metrics),
        *_served(summary["served"]),
    ]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report


def _stages(stages: list[dict]) -> list[str]:
    if not stages:
        return []
    rows = [f"| {s['name']} | {s['seconds']:.0f} s | {s['result']} |" for s in stages]
    return ["## Stages", "", "| stage | time | result |", "| --- | --- | --- |", *rows, ""]


def _sweep(out: Path, swept: dict) -> list[str]:
    files = swept["files"]
    table = storage.read_text(files["md"]).split("\n", 2)[2]  # below its own title
    table = table.split("\n## ", 1)[0].strip()
    registered = swept["registered"]
    return [
        "## The sweep (Ray Tune, one Ray Train run per trial)",
        "",
        f"The paper's ablation rows on the demo's data; the winner by validation AUC, trial "
        f"`{swept['winner']}`, is registered as `{registered['name']}@{registered['version']}` "
        f"(alias `best`). Full table: [{_rel(out, files['md'])}]({_rel(out, files['md'])}).",
        "",
        table,
        "",
        f"![ablation]({_rel(out, files['png'])})",
        "",
    ]


def _evaluation(out: Path, metrics: dict) -> list[str]:
    figures = out / metrics["benchmark"] / "figures"
    auc = metrics["auc"]["macro"]
    pointing = metrics["pointing"]
    dice = metrics["segmentation"]["dice"]
    return [
        "## The winner, evaluated zero-shot on the held-out split",
        "",
        "| macro AUC | pointing game | (a random peak) | Dice |",
        "| --- | --- | --- | --- |",
        f"| {auc:.3f} | {pointing['mean_over_classes']:.3f} | {pointing['chance']:.3f} "
        f"| {dice:.3f} |",
        "",
        f"Per finding: [{metrics['benchmark']}/report.md]({metrics['benchmark']}/report.md).",
        "",
        "Training curves of the winner's run:",
        "",
        f"![training]({_rel(out, figures / 'training.png')})",
        "",
        "Similarity maps (boxes and mask outlines drawn, the peak marked):",
        "",
        f"![maps]({_rel(out, figures / 'overlays.png')})",
        "",
        f"![ROC]({_rel(out, figures / 'roc.png')}) "
        f"![pointing]({_rel(out, figures / 'pointing.png')})",
        "",
    ]


def _served(answers: list[dict]) -> list[str]:
    findings = list(answers[0]["probabilities"]) if answers else []
    lines = [
        "## Served (Ray Serve), asked over HTTP",
        "",
        "Held-out images sent to `POST /v1/classify` (every finding) and `POST /v1/ground` (the "
        "findings present, with overlays), as a client would; answers in `served/answers.json`.",
        "Probabilities are the sigmoid of each prompt's logit, as the authors compute them; they "
        "rank images (what AUC measures) rather than being calibrated. Findings present are in "
        "bold.",
        "",
        "| image | " + " | ".join(findings) + " | peak in the finding's box (ground) |",
        "| --- |" + " --- |" * (len(findings) + 1),
    ]
    for answer in answers:
        cells = [
            f"**{answer['probabilities'][name]:.3f}**"
            if name in answer["present"]
            else f"{answer['probabilities'][name]:.3f}"
            for name in findings
        ]
        hits = ", ".join(
            f"{g['phrase']}: {'n/a' if g['hit'] is None else 'yes' if g['hit'] else 'no'}"
            for g in answer["grounding"]
        )
        lines.append(f"| `{answer['image']}` | " + " | ".join(cells) + f" | {hits} |")
    lines.append("")
    for answer in answers:
        lines += [f"![{g['phrase']}]({g['overlay']})" for g in answer["grounding"]]
    return [*lines, ""]


def _rel(out: Path, path: str | Path) -> str:
    return os.path.relpath(str(path), str(out))
