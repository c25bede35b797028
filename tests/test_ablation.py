"""The sweep's ablation writer (radzero/eval/ablation.py) on a small synthetic sweep, no Ray.

The design: the paper's rows (a)-(d) and RadZero at 224/518 px, one more dot-product trial
with 2 layers; (d) stopped early, the 518 px trial errored. Pairs that differ in one parameter:
similarity (a)-(b) and (c)-t5, layers (a)-t5 and (b)-(c), multi-positive (c)-(d); none in
resolution, since its only 518 px trial errored.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from radzero import storage
from radzero.eval import ablation, results

OOM = "Traceback (most recent call last):\n  File train.py\ntorch.OutOfMemoryError: CUDA OOM"


def _record(
    trial: str,
    row: str | None,
    status: str,
    setting: tuple,
    val_auc: float | None,
    test: tuple[float, float, float] | None,
    epochs: int = 3,
    error: str = "",
) -> dict:
    similarity, layers, multi_positive, resolution = setting
    params = {
        "similarity": similarity,
        "align_layers": layers,
        "multi_positive": multi_positive,
        "resolution": resolution,
        "lr": 1e-3,
    }
    scores = None
    if test is not None:
        auc, pointing, dice = test
        scores = {"auc": auc, "pointing": pointing, "pointing_chance": 0.07, "dice": dice}
    return {
        "trial": trial,
        "status": status,
        "row": row,
        "params": params,
        "epochs": epochs,
        "val_auc": val_auc,
        "test": scores,
        "error": error,
    }


@pytest.fixture
def records() -> list[dict]:
    return [
        _record("t_00000", "(a)", "finished", ("dot", 0, False, 224), 0.68, (0.70, 0.30, 0.10)),
        _record("t_00001", "(b)", "finished", ("cos", 0, False, 224), 0.72, (0.74, 0.32, 0.11)),
        _record("t_00002", "(c)", "finished", ("cos", 2, False, 224), 0.71, (0.73, 0.45, 0.15)),
        _record(
            "t_00003", "(d)", "stopped", ("cos", 2, True, 224), 0.75, (0.76, 0.44, 0.14), epochs=1
        ),
        _record("t_00004", "RadZero", "errored", ("cos", 2, True, 518), None, None, 0, error=OOM),
        _record("t_00005", None, "finished", ("dot", 2, False, 224), 0.70, (0.75, 0.40, 0.12)),
    ]


def test_varied_dimensions_keep_the_first_records_order() -> None:
    records = [
        {"params": {"b": 1, "a": "x", "fixed": 3}},
        {"params": {"b": 1, "a": "y", "fixed": 3}},
        {"params": {"b": 2, "a": "y", "fixed": 3, "late": True}},
    ]
    assert ablation.varied_dimensions(records) == ["b", "a", "late"]
    assert ablation.varied_dimensions(records[:2]) == ["a"]
    assert ablation.varied_dimensions(records[:1]) == []


def test_the_csv_has_one_row_per_trial(records, tmp_path) -> None:
    paths = ablation.write(str(tmp_path), records)
    assert paths == {kind: str(tmp_path / f"ablation.{kind}") for kind in ("csv", "md", "png")}
    table = pd.read_csv(paths["csv"])
    assert list(table.columns) == [
        "trial",
        "row",
        "status",
        "similarity",
        "align_layers",
        "multi_positive",
        "resolution",
        "epochs",
        "val_auc",
        "test_auc",
        "pointing",
        "dice",
        "error",
    ]  # lr is the same in every trial
    assert table["trial"].tolist() == [r["trial"] for r in records]
    assert table["status"].tolist() == [r["status"] for r in records]
    assert table["row"].fillna("").tolist() == ["(a)", "(b)", "(c)", "(d)", "RadZero", ""]
    assert table["similarity"].tolist() == ["dot", "cos", "cos", "cos", "cos", "dot"]
    assert table["align_layers"].tolist() == [0, 0, 2, 2, 2, 2]
    assert table["multi_positive"].tolist() == [False, False, False, True, True, False]
    assert table["resolution"].tolist() == [224, 224, 224, 224, 518, 224]
    assert table["epochs"].tolist() == [3, 3, 3, 1, 0, 3]
    known = table.drop(index=4)
    np.testing.assert_allclose(known["val_auc"], [0.68, 0.72, 0.71, 0.75, 0.70])
    np.testing.assert_allclose(known["test_auc"], [0.70, 0.74, 0.73, 0.76, 0.75])
    np.testing.assert_allclose(known["pointing"], [0.30, 0.32, 0.45, 0.44, 0.40])
    np.testing.assert_allclose(known["dice"], [0.10, 0.11, 0.15, 0.14, 0.12])
    assert table.loc[4, ["val_auc", "test_auc", "pointing", "dice"]].isna().all()
    assert table["error"].fillna("").tolist() == ["", "", "", "", OOM, ""]


def _line(markdown: str, start: str) -> str:
    (found,) = [line for line in markdown.splitlines() if line.startswith(start)]
    return found


def test_the_markdown_table_bolds_the_best_and_marks_stopped_and_errored(records) -> None:
    text = ablation.markdown(records)
    assert text.startswith("# Ablation sweep\n")
    header = _line(text, "| Trial |")
    assert header.split(" | ")[1:6] == ["Similarity", "Trainable layers", "MP", "Res.", "Epochs"]
    assert "Classification" in header and "Grounding" in header and "Segmentation" in header
    # (a): nothing best; (c): best pointing game and Dice; (d): best val and test AUC.
    assert _line(text, "| `t_00000` (a) |") == (
        "| `t_00000` (a) | dot-product | Linear | no | 224 | 3 | 0.680 | 0.700 | 0.300 | 0.100 |"
    )
    assert _line(text, "| `t_00002` (c) |").endswith("| **0.450** | **0.150** |")
    assert _line(text, "| `t_00003` (d) † |") == (
        "| `t_00003` (d) † | cos | 2 Transformer | yes | 224 | 1 "
        "| **0.750** | **0.760** | 0.440 | 0.140 |"
    )
    assert _line(text, "| `t_00004` RadZero ‡ |").endswith("| – | – | – | – |")
    assert text.count("**") == 2 * 4  # one best per metric
    errored = text.split("## Errored trials (1)")[1]
    assert "- `t_00004`: torch.OutOfMemoryError: CUDA OOM" in errored
    assert "paper:" not in text and "0.839" not in text  # the paper's rows need the preset


def test_the_paper_preset_puts_the_published_rows_beside_ours(records) -> None:
    text = ablation.markdown(records, preset="paper-ablation")
    assert _line(text, "| paper: (a) |") == (
        "| paper: (a) | dot-product | Linear | no | 224 | 0.839 | 0.824 | 0.853 | 0.805 | 0.896 "
        "| 0.792 | 0.472 | 0.784 | 0.078 | – | – | – |"
    )
    assert _line(text, "| paper: RadZero |").startswith(
        "| paper: RadZero | cos | 2 Transformer | yes | 518 | 0.847 |"
    )
    assert _line(text, "| paper: RadZero |").endswith("| 0.622 | 0.844 | 0.171 | – | – | – |")
    ours = _line(text, "| sweep: (d) `t_00003` † |")
    assert ours.endswith("| – | – | 0.760 | 0.440 | 0.140 |")
    lines = text.splitlines()
    published = [i for i, line in enumerate(lines) if line.startswith("| paper: ")]
    assert len(published) == len(ablation.PUBLISHED) == 5
    # Each of our labelled trials right after its published row; t_00005 has no row.
    for label, trial in [("(a)", "t_00000"), ("(c)", "t_00002"), ("RadZero", "t_00004")]:
        at = lines.index(_line(text, f"| paper: {ablation.PUBLISHED[label]['method']} |"))
        assert lines[at + 1].startswith(f"| sweep: {label} `{trial}`")
    assert "t_00005" not in text.split("## Beside the paper's ablation")[1]


def test_published_rows_agree_with_the_papers_results_file() -> None:
    paper = results.paper()
    for label, model in [("(d)", "RadZero (224px)"), ("RadZero", "RadZero")]:
        for column in ablation.PAPER_COLUMNS:
            assert ablation.PUBLISHED[label][column] == paper[model][column], (label, column)


def test_orderings_compare_only_pairs_that_differ_in_one_parameter(records) -> None:
    found = {claim["claim"]: claim for claim in ablation.orderings(records)}
    similarity = found["cos >= dot-product on test AUC"]
    assert (similarity["pairs"], similarity["holds"]) == (2, 1)
    np.testing.assert_allclose(similarity["deltas"], [0.74 - 0.70, 0.73 - 0.75])
    layers = found["2 or more Transformer layers >= Linear on the pointing game"]
    assert (layers["pairs"], layers["holds"]) == (2, 2)
    np.testing.assert_allclose(layers["deltas"], [0.40 - 0.30, 0.45 - 0.32])
    auc = found["multi-positive >= single positive on test AUC"]
    dice = found["multi-positive >= single positive on Dice"]
    assert (auc["pairs"], auc["holds"], dice["pairs"], dice["holds"]) == (1, 1, 1, 0)
    np.testing.assert_allclose([auc["deltas"][0], dice["deltas"][0]], [0.03, -0.01])
    resolution = found["higher resolution >= lower on the pointing game"]
    assert (resolution["pairs"], resolution["holds"], resolution["deltas"]) == (0, 0, [])

    text = ablation.markdown(records)
    assert "- cos >= dot-product on test AUC: holds in 1 of 2 pairs, mean delta +0.010" in text
    assert "on Dice: holds in 0 of 1 pairs, mean delta -0.010" in text
    assert "on the pointing game: no pair differs only in Res." in text

    # Had the 518 px trial finished, it would pair with (d) (a tie holds); a 1-layer trial
    # pairs with no Linear one (the claim is about 2 or more layers); a trial without Dice
    # drops out of the Dice pairs.
    records[4] |= {"status": "finished", "test": {"auc": 0.7, "pointing": 0.44, "dice": 0.2}}
    records.append(
        _record("t_00006", None, "finished", ("dot", 1, False, 224), 0.6, (0.6, 0.9, 0.1))
    )
    records[3]["test"]["dice"] = float("nan")
    found = {claim["claim"]: claim for claim in ablation.orderings(records)}
    resolution = found["higher resolution >= lower on the pointing game"]
    assert (resolution["pairs"], resolution["holds"], resolution["deltas"]) == (1, 1, [0.0])
    assert found["2 or more Transformer layers >= Linear on the pointing game"]["pairs"] == 2
    assert found["multi-positive >= single positive on Dice"]["pairs"] == 0
    assert found["multi-positive >= single positive on test AUC"]["pairs"] == 1


def test_the_figure_is_a_grid_of_dimension_by_metric(records, tmp_path) -> None:
    paths = ablation.write(str(tmp_path), records)
    with Image.open(paths["png"]) as image:
        # 4 varied parameters x 3 metrics at 2.7 x 2.1 inches per panel, 110 dpi.
        assert (image.format, image.size) == ("PNG", (1254, 770))
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 10  # something was drawn
    fig = ablation.figure(records)
    titles = [ax.get_title() for ax in fig.axes[:4]]
    assert titles == ["Similarity", "Trainable layers", "MP", "Res."]
    assert [fig.axes[i].get_ylabel() for i in (0, 4, 8)] == ["test AUC", "pointing game", "Dice"]
    ticks = [[t.get_text() for t in ax.get_xticklabels()] for ax in fig.axes[:4]]
    assert ticks == [["dot-product", "cos"], ["Linear", "2"], ["no", "yes"], ["224", "518"]]
    # The 518 px value has no finished trial: its place says so instead of a point.
    assert "all errored" in [text.get_text() for text in fig.axes[3].texts]


def test_writing_to_s3(records, s3_bucket, tmp_path) -> None:
    uri = f"s3://{s3_bucket}/x"
    paths = ablation.write(uri, records, preset="paper-ablation")
    assert paths == {kind: f"{uri}/ablation.{kind}" for kind in ("csv", "md", "png")}
    local = ablation.write(str(tmp_path), records, preset="paper-ablation")
    csv = storage.read_bytes(f"s3://{s3_bucket}/x/ablation.csv")
    assert csv == (tmp_path / "ablation.csv").read_bytes()
    assert pd.read_csv(io.BytesIO(csv))["trial"].tolist() == [r["trial"] for r in records]
    assert storage.read_text(paths["md"]) == (tmp_path / "ablation.md").read_text()
    assert storage.read_bytes(paths["png"]).startswith(b"\x89PNG")
    with (
        Image.open(io.BytesIO(storage.read_bytes(paths["png"]))) as image,
        Image.open(local["png"]) as written,
    ):
        assert (image.format, image.size) == ("PNG", written.size)


def test_no_records_is_an_error(tmp_path) -> None:
    with pytest.raises(ValueError, match="no trial records"):
        ablation.write(str(tmp_path), [])
