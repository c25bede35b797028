"""Online answers of a RadZero model: classification, grounding and segmentation of uploads.

What the serving stage returns for one image, computed with the library's own calls
(:func:`radzero.data.images.read_image`, the model's preprocessing, :meth:`RadZero.classify`
and :meth:`RadZero.similarity_maps`), so a served answer equals the library's for the same
image. :func:`answer_batch` takes a list of :class:`Query` and returns one answer per query:
the images of the whole list go through the backbone in one forward pass, then each query is
scored on its own phrases. A query whose image cannot be decoded gets an :class:`InputError`
instead of an answer; the rest of the batch is unaffected. No Ray and no HTTP here.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from radzero.data.images import MAX_PIXELS, ImageTooLarge, read_image
from radzero.model.radzero import RadZero

Task = Literal["classify", "ground", "segment"]
OVERLAY_SIDE = 512  # the longer side of a PNG overlay, in pixels
OVERLAY_ALPHA = 0.45


@dataclass
class Query:
    """One request: an encoded image (PNG, JPEG or DICOM bytes) and what to ask of it.

    ``texts`` are the findings of ``classify`` or the phrases of ``ground`` and ``segment``;
    ``templates`` (classify) default to the model's; ``threshold`` (segment) is required there;
    ``overlays`` asks ``ground`` and ``segment`` for PNG overlays.
    """

    task: Task
    image: bytes
    texts: list[str]
    name: str = "upload"
    templates: list[str] | None = None
    threshold: float | None = None
    overlays: bool = False
    max_pixels: int = MAX_PIXELS


@dataclass
class InputError:
    """Why a query's image was refused: ``status`` 400 (not a usable image) or 413 (too large)."""

    status: int
    detail: str


@dataclass
class _Decoded:
    gray: np.ndarray
    pixels: torch.Tensor


def answer_batch(model: RadZero, queries: Sequence[Query]) -> list[dict[str, Any] | InputError]:
    """One answer (a JSON-ready dict) or :class:`InputError` per query, in order."""
    decoded: list[_Decoded | InputError] = [_decode(model, query) for query in queries]
    usable = [i for i, item in enumerate(decoded) if isinstance(item, _Decoded)]
    answers: list[dict[str, Any] | InputError] = list(decoded)  # type: ignore[arg-type]
    if not usable:
        return answers
    with torch.no_grad():
        pixels = torch.stack([decoded[i].pixels for i in usable])  # type: ignore[union-attr]
        tokens = model.encode_image(pixels.to(_device(model)))
    for row, i in enumerate(usable):
        item = decoded[i]
        assert isinstance(item, _Decoded)
        answers[i] = _answer(model, queries[i], item.gray, tokens[row : row + 1])
    return answers


def _decode(model: RadZero, query: Query) -> _Decoded | InputError:
    try:
        gray = read_image(query.image, query.name, max_pixels=query.max_pixels)
    except ImageTooLarge as err:
        return InputError(413, str(err))
    except ValueError as err:
        return InputError(400, str(err))
    return _Decoded(gray, model.preprocess(gray))


def _answer(model: RadZero, query: Query, gray: np.ndarray, tokens: torch.Tensor) -> dict:
    height, width = gray.shape
    answer: dict[str, Any] = {"image": {"width": width, "height": height}}
    if query.task == "classify":
        probabilities = model.classify(query.texts, query.templates, tokens=tokens)[0]
        answer["findings"] = [
            {"finding": finding, "probability": float(p)}
            for finding, p in zip(query.texts, probabilities.tolist(), strict=True)
        ]
    elif query.task == "ground":
        answer["phrases"] = ground(model, tokens, query.texts, gray, query.overlays)
    else:
        if query.threshold is None:
            raise ValueError("a segment query needs a threshold")
        answer["threshold"] = query.threshold
        answer["phrases"] = segment(model, tokens, query.texts, gray, query.threshold)
    return answer


def ground(
    model: RadZero, tokens: torch.Tensor, phrases: Sequence[str], gray: np.ndarray, overlays: bool
) -> list[dict[str, Any]]:
    """Per phrase: its probability, the map's peak in the original image's pixels, the map on
    the patch grid (rows of floats) and, with ``overlays``, the map over the image as a PNG.

    The peak is the argmax of the map upsampled straight to the original size, as the authors'
    inference takes it (one phrase's map at a time, so memory stays one map's)."""
    probabilities = model.classify(phrases, ["{}"], tokens=tokens)[0].tolist()
    grid = model.similarity_maps(phrases, tokens=tokens, size=(_grid_side(model),) * 2)[0]
    height, width = gray.shape
    shown = _overlay_size(height, width) if overlays else None
    display = model.similarity_maps(phrases, tokens=tokens, size=shown)[0] if shown else None
    results = []
    for p, phrase in enumerate(phrases):
        full = model.similarity_maps([phrase], tokens=tokens, size=(height, width))[0, 0]
        row, column = np.unravel_index(int(torch.argmax(full)), (height, width))
        peak = (int(column), int(row))
        result = {
            "phrase": phrase,
            "probability": float(probabilities[p]),
            "peak": {"x": peak[0], "y": peak[1]},
            "grid": [[round(v, 6) for v in line] for line in grid[p].tolist()],
        }
        if display is not None:
            result["overlay_png"] = _b64(overlay_png(gray, display[p].cpu().numpy(), peak))
        results.append(result)
    return results


def segment(
    model: RadZero, tokens: torch.Tensor, phrases: Sequence[str], gray: np.ndarray, threshold: float
) -> list[dict[str, Any]]:
    """Per phrase: ``map >= threshold`` in the original image size as RLE (see
    :func:`encode_rle`) and as a PNG, the map upsampled straight to that size (one phrase at a
    time, so memory stays one map's)."""
    height, width = gray.shape
    results = []
    for phrase in phrases:
        heatmap = model.similarity_maps([phrase], tokens=tokens, size=(height, width))[0, 0]
        mask = (heatmap >= threshold).cpu().numpy()  # a GPU replica's map
        results.append(
            {
                "phrase": phrase,
                "pixels": int(mask.sum()),
                "rle": encode_rle(mask),
                "mask_png": _b64(mask_png(mask)),
            }
        )
    return results


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """A boolean (H, W) mask as uncompressed COCO RLE: ``{"size": [H, W], "counts": [...]}``,
    run lengths over the mask flattened column by column, starting with a run of zeros."""
    flat = np.asarray(mask, dtype=bool).flatten(order="F")
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(edges).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """The inverse of :func:`encode_rle`."""
    height, width = rle["size"]
    values = np.zeros(len(rle["counts"]), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, rle["counts"])
    if flat.size != height * width:
        raise ValueError(f"RLE counts cover {flat.size} pixels, not {height}x{width}")
    return flat.reshape((height, width), order="F")


def overlay_png(gray: np.ndarray, heatmap: np.ndarray, peak: tuple[int, int]) -> bytes:
    """The map (jet colours, [0, 1]) over the grey image at the map's size, the peak (in the
    original image's pixels) marked with a white cross; PNG bytes."""
    from matplotlib import colormaps

    height, width = heatmap.shape
    base = Image.fromarray(np.uint8(np.clip(gray, 0, 1) * 255)).resize((width, height))
    grey = np.asarray(base.convert("RGB"), dtype=np.float32)
    colour = colormaps["jet"](np.clip(heatmap, 0, 1))[..., :3] * 255
    blended = (1 - OVERLAY_ALPHA) * grey + OVERLAY_ALPHA * colour
    x = round((peak[0] + 0.5) * width / gray.shape[1] - 0.5)
    y = round((peak[1] + 0.5) * height / gray.shape[0] - 0.5)
    arm = max(3, width // 40)
    blended[max(0, y - 1) : y + 2, max(0, x - arm) : x + arm + 1] = 255
    blended[max(0, y - arm) : y + arm + 1, max(0, x - 1) : x + 2] = 255
    return _png(Image.fromarray(np.uint8(blended)))


def mask_png(mask: np.ndarray) -> bytes:
    """A boolean mask as a 1-bit PNG (white where true)."""
    return _png(Image.fromarray(np.asarray(mask, dtype=bool)))


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _overlay_size(height: int, width: int) -> tuple[int, int]:
    scale = min(1.0, OVERLAY_SIDE / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def _grid_side(model: RadZero) -> int:
    return model.backbone.grid()


def _device(model: RadZero) -> torch.device:
    return model.log_tau.device
