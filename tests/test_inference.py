"""radzero.inference without Ray or HTTP: answers equal to the model's own calls, a batch in
which one image is refused, RLE round trips, peaks in the original image's pixels."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image

from radzero.data.images import load_image
from radzero.inference import (
    InputError,
    Query,
    answer_batch,
    decode_rle,
    encode_rle,
    mask_png,
    overlay_png,
)
from radzero.model.radzero import create_model
from tests.conftest import TINY_CONFIG
from tests.test_images import png_claiming


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model(TINY_CONFIG).eval()


def _png(height: int, width: int, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_batch_answers_each_query_as_the_model_does_alone(model):
    images = [_png(90, 70, 0), _png(64, 64, 1), b"not an image", png_claiming(50_000, 50_000)]
    queries = [
        Query("classify", images[0], ["pleural effusion", "cardiomegaly"]),
        Query("ground", images[1], ["left effusion"], overlays=True),
        Query("classify", images[2], ["cardiomegaly"], name="notes.txt"),
        Query("segment", images[3], ["mass"], threshold=0.5, name="bomb.png"),
    ]
    answers = answer_batch(model, queries)

    pixels = load_image(images[0], model.preprocess)[None]
    alone = model.classify(["pleural effusion", "cardiomegaly"], images=pixels)[0].tolist()
    assert [f["probability"] for f in answers[0]["findings"]] == pytest.approx(alone, abs=1e-5)
    assert answers[0]["image"] == {"width": 70, "height": 90}

    pixels = load_image(images[1], model.preprocess)[None]
    grid = model.backbone.grid()
    expected = model.similarity_maps(["left effusion"], images=pixels, size=(grid, grid))[0, 0]
    phrase = answers[1]["phrases"][0]
    assert np.allclose(phrase["grid"], expected.numpy(), atol=1e-5)
    overlay = Image.open(io.BytesIO(base64.b64decode(phrase["overlay_png"])))
    assert overlay.size == (64, 64)

    assert isinstance(answers[2], InputError) and answers[2].status == 400
    assert "notes.txt" in answers[2].detail and "not an image" in answers[2].detail
    assert isinstance(answers[3], InputError) and answers[3].status == 413


def test_a_batch_of_refused_images_runs_no_forward(model, monkeypatch):
    monkeypatch.setattr(model, "encode_image", lambda pixels: pytest.fail("forward ran"))
    answers = answer_batch(model, [Query("classify", b"", ["mass"])])
    assert isinstance(answers[0], InputError) and "empty file" in answers[0].detail


def test_the_peak_is_the_argmax_of_the_map_at_the_original_size(model, monkeypatch):
    """A 64 px model on a 128 x 256 (h x w) image: the map upsampled (here: nearest) to the
    original size peaks first at row 20, column 160, which model pixel (10, 40) covers."""
    side = model.preprocess.image_size
    heatmap = torch.zeros(1, 1, side, side)
    heatmap[0, 0, 10, 40] = 1.0

    def maps(phrases, *, tokens=None, size=None, **_):
        return torch.nn.functional.interpolate(heatmap, size=size) if size else heatmap

    monkeypatch.setattr(model, "similarity_maps", maps)
    answer = answer_batch(model, [Query("ground", _png(128, 256, 2), ["mass"])])[0]
    assert answer["phrases"][0]["peak"] == {"x": 160, "y": 20}


@pytest.mark.parametrize(
    "mask",
    [
        np.zeros((3, 4), dtype=bool),
        np.ones((3, 4), dtype=bool),
        np.eye(5, 7, dtype=bool),
        np.random.default_rng(0).random((33, 17)) > 0.6,
    ],
)
def test_rle_round_trips_column_major_starting_with_zeros(mask):
    rle = encode_rle(mask)
    assert rle["size"] == list(mask.shape) and sum(rle["counts"]) == mask.size
    assert np.array_equal(decode_rle(rle), mask)
    if mask.flat[0]:
        assert rle["counts"][0] == 0


def test_rle_counts_known_values():
    mask = np.array([[0, 1], [1, 1]], dtype=bool)  # column by column: 0 1 1 1
    assert encode_rle(mask) == {"size": [2, 2], "counts": [1, 3]}
    with pytest.raises(ValueError, match="cover 3 pixels"):
        decode_rle({"size": [2, 2], "counts": [1, 2]})


def test_pngs_decode_to_what_was_drawn():
    mask = np.random.default_rng(1).random((40, 30)) > 0.5
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(mask_png(mask)))).astype(bool), mask)
    gray = np.full((40, 30), 0.5, dtype=np.float32)
    heatmap = np.zeros((20, 15), dtype=np.float32)
    image = np.asarray(Image.open(io.BytesIO(overlay_png(gray, heatmap, (29, 0)))))
    assert image.shape == (20, 15, 3)
    assert (image[0, -1] == 255).all()  # the peak's cross, at the top right
