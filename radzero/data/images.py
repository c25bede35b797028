"""Decode chest radiographs (PNG, JPEG, DICOM) into grey arrays and backbone input tensors."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import io
import os
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pydicom
import torch
from PIL import Image, UnidentifiedImageError
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, get_decoder
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

# ``resize`` lives with the transform that uses it; still importable from here.
from radzero.model.preprocess import PreprocessConfig
from radzero.model.preprocess import resize as resize

MIN_SIDE = 16
MAX_PIXELS = 64 * 2**20  # about 8k x 8k; a chest radiograph is at most ~4k x 4k
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_PIL_CONVERSIONS = {"1": "L", "P": "RGBA", "PA": "RGBA", "CMYK": "RGB", "YCbCr": "RGB"}
_ENCODING_SYNTAX = {
    (True, True): ImplicitVRLittleEndian,
    (False, True): ExplicitVRLittleEndian,
    (False, False): ExplicitVRBigEndian,
}
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    NotImplementedError,
    RuntimeError,
    struct.error,
    InvalidDicomError,
)
_DICOM_SAMPLES = (1, 3)
_DICOM_BITS = (1, 8, 16, 32)


class ImageTooLarge(ValueError):
    """The image header claims more pixels than allowed; refused before any pixel is decoded."""


def read_image(
    source: str | os.PathLike | bytes, name: str | None = None, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """Decode PNG/JPEG (8- and 16-bit) or DICOM into a float32 (H, W) grey array in [0, 1].

    ``source`` is a path or the raw file bytes; ``name`` labels the file in error messages.
    Failures raise ``ValueError`` naming the file; a missing path raises ``FileNotFoundError``.
    A header claiming more than ``max_pixels`` pixels (all frames together), or more than
    Pillow's ``Image.MAX_IMAGE_PIXELS``, raises :class:`ImageTooLarge` before any decoding.
    """
    data, label = _read_source(source, name)
    if not data:
        raise _error(label, "empty file")
    gray = _decode(data, label, max_pixels)
    height, width = gray.shape
    if min(height, width) < MIN_SIDE:
        raise _error(label, f"image is {width}x{height} px, need at least {MIN_SIDE} per side")
    return np.clip(gray, 0.0, 1.0).astype(np.float32, copy=False)


def stretch_contrast(gray: np.ndarray) -> np.ndarray:
    """``gray`` min-max stretched to the full range [0, 1] (a flat image stays as it is), as
    the authors' benchmark loader stretched each image before preprocessing."""
    low, high = float(gray.min()), float(gray.max())
    if high <= low:
        return gray
    return ((gray - low) / (high - low)).astype(np.float32, copy=False)


def to_pixels(gray: np.ndarray, cfg: PreprocessConfig) -> torch.Tensor:
    """Backbone input from an (H, W) grey array in [0, 1]: ``cfg(gray)`` (see PreprocessConfig)."""
    return cfg(gray)


@functools.cache
def reuse_freed_memory(keep_mb: int = 256) -> bool:
    """Let glibc keep freed image buffers for the next image instead of returning them each time.

    glibc hands out big blocks as fresh pages from the OS unless its adaptive threshold has
    already grown, so a process decoding radiographs one after another zeroes and faults in
    tens of MB per image: ~1,200 page faults for a 2k x 2k PNG, against ~25 after this call
    (it raised two Ray workers from 47 to 56 images/s here). Buffers up to 64 MiB then come from
    the heap, and up to ``keep_mb`` of freed heap stay with the process. Once per process; False
    where the C library is not glibc.
    """
    name = ctypes.util.find_library("c")
    mallopt = getattr(ctypes.CDLL(name), "mallopt", None) if name else None
    if mallopt is None:
        return False
    trim_threshold, mmap_threshold = -1, -3  # M_TRIM_THRESHOLD, M_MMAP_THRESHOLD in malloc.h
    return bool(mallopt(mmap_threshold, 64 * 2**20) and mallopt(trim_threshold, keep_mb * 2**20))


def load_image(
    source: str | os.PathLike | bytes,
    cfg: PreprocessConfig,
    name: str | None = None,
    max_pixels: int = MAX_PIXELS,
) -> torch.Tensor:
    """Decode ``source`` with :func:`read_image` and turn it into backbone input."""
    return cfg(read_image(source, name, max_pixels=max_pixels))


def _read_source(source: str | os.PathLike | bytes, name: str | None) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), name or "<bytes>"
    path = Path(source)
    return path.read_bytes(), name or str(path)


def _error(label: str, reason: str) -> ValueError:
    return ValueError(f"{label}: {reason}")


@contextmanager
def _decoding(label: str, what: str) -> Iterator[None]:
    """Re-raise any decoder failure as a ValueError naming the file."""
    try:
        yield
    except _DECODE_ERRORS as exc:
        raise _error(label, f"{what} ({type(exc).__name__}: {exc})") from exc


def _check_size(label: str, width: int, height: int, frames: int, max_pixels: int) -> None:
    """Raise ImageTooLarge when a header's claimed size is over ``max_pixels`` pixels."""
    claimed = width * height * frames
    if claimed > max_pixels:
        size = f"{width}x{height}" + (f"x{frames} frames" if frames > 1 else "")
        raise ImageTooLarge(
            f"{label}: header claims {size} = {claimed} pixels, over the limit of {max_pixels}"
        )


@contextmanager
def _refusing_bombs(label: str) -> Iterator[None]:
    """Turn Pillow's decompression-bomb warning and error into ImageTooLarge, for this block."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            yield
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise ImageTooLarge(f"{label}: {exc}") from exc


def _decode(data: bytes, label: str, max_pixels: int) -> np.ndarray:
    if data[128:132] == b"DICM":
        return _decode_dicom(data, label, max_pixels, force=False)
    with _refusing_bombs(label):
        img = _open_pil(data, label)
        if img is not None:
            with img:
                return _decode_pil(img, label, max_pixels)
    if label.lower().endswith(".dcm"):
        return _decode_dicom(data, label, max_pixels, force=True)
    raise _error(label, "not an image (expected PNG, JPEG or DICOM)")


def _open_pil(data: bytes, label: str) -> Image.Image | None:
    """Open the image, reading its header only; None when Pillow knows no such format."""
    try:
        return Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        return None
    except _DECODE_ERRORS as exc:
        raise _error(label, f"corrupt image header ({type(exc).__name__}: {exc})") from exc


def _decode_pil(img: Image.Image, label: str, max_pixels: int) -> np.ndarray:
    _check_size(label, *img.size, 1, max_pixels)
    if getattr(img, "n_frames", 1) > 1:
        raise _error(label, "multi-frame images are not supported")
    with _decoding(label, "corrupt or truncated image"):
        img.load()
    if img.mode in _PIL_CONVERSIONS:
        img = img.convert(_PIL_CONVERSIONS[img.mode])
    arr = np.asarray(img)
    mode = img.mode
    if mode in ("LA", "RGBA"):
        arr, mode = _drop_opaque_alpha(arr, label), mode[:-1]
    if mode == "L":
        return arr.astype(np.float32) / 255
    if mode == "RGB":
        return _luminance(arr) / 255
    if mode in _SIXTEEN_BIT_MODES:
        return _sixteen_bit(arr, label)
    raise _error(label, f"unsupported image mode {mode!r}")


def _drop_opaque_alpha(arr: np.ndarray, label: str) -> np.ndarray:
    if (arr[..., -1] != 255).any():
        raise _error(
            label,
            "image has transparent pixels; a transparent image is ambiguous for a radiograph "
            "(flatten it onto a background first)",
        )
    colour = arr[..., :-1]
    return colour[..., 0] if colour.shape[-1] == 1 else colour


def _sixteen_bit(arr: np.ndarray, label: str) -> np.ndarray:
    if arr.min() < 0 or arr.max() > 65535:
        raise _error(label, "integer image has values outside the 16-bit range")
    return arr.astype(np.float32) / 65535


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., :3].astype(np.float32) @ _LUMA


def _decode_dicom(data: bytes, label: str, max_pixels: int, force: bool) -> np.ndarray:
    with _decoding(label, "cannot parse DICOM"):
        header = pydicom.dcmread(io.BytesIO(data), force=force, stop_before_pixels=True)
    _check_dicom_header(header, label, max_pixels)
    with _decoding(label, "cannot parse DICOM"):
        ds = pydicom.dcmread(io.BytesIO(data), force=force)
    if "PixelData" not in ds:
        raise _error(label, "DICOM file has no pixel data")
    _check_decoder(ds, label)
    with _refusing_bombs(label), _decoding(label, "cannot decode DICOM pixel data"):
        arr = ds.pixel_array
    if int(ds.get("SamplesPerPixel") or 1) > 1:
        return _luminance(arr) / (2.0 ** int(ds.BitsStored) - 1)
    if ds.get("PhotometricInterpretation") == "PALETTE COLOR":
        with _decoding(label, "invalid DICOM palette"):
            rgb = apply_color_lut(arr, ds)
        return _luminance(rgb) / np.iinfo(rgb.dtype).max
    with _decoding(label, "invalid DICOM modality/VOI LUT"):
        gray = _monochrome(arr, ds)
    return 1.0 - gray if ds.get("PhotometricInterpretation") == "MONOCHROME1" else gray


def _check_dicom_header(header: Dataset, label: str, max_pixels: int) -> None:
    """Refuse an image geometry that is absent, malformed, too large or multi-frame."""
    rows, columns, samples, bits, frames = (
        _dicom_int(header, keyword, label)
        for keyword in ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "NumberOfFrames")
    )
    for keyword, side in (("Rows", rows), ("Columns", columns)):
        if not side:
            raise _error(label, f"DICOM {keyword} is {side}, need at least 1")
    if samples not in _DICOM_SAMPLES:
        raise _error(label, f"DICOM SamplesPerPixel is {samples}, expected 1 or 3")
    if bits not in _DICOM_BITS:
        raise _error(label, f"DICOM BitsAllocated is {bits}, expected 1, 8, 16 or 32")
    frames = frames or 1
    if frames < 1:
        raise _error(label, f"DICOM NumberOfFrames is {frames}, need at least 1")
    _check_size(label, columns, rows, frames, max_pixels)
    if frames > 1:
        raise _error(label, f"multi-frame DICOM ({frames} frames) is not supported")


def _dicom_int(header: Dataset, keyword: str, label: str) -> int | None:
    """A single integer header value, None when absent or empty."""
    with _decoding(label, f"DICOM {keyword} is not one integer"):
        value = header.get(keyword)
        return None if value is None or value == "" else int(value)


def _check_decoder(ds: Dataset, label: str) -> None:
    """Fill a missing transfer syntax and fail early when no decoder plugin is installed."""
    if "TransferSyntaxUID" not in ds.file_meta:
        ds.file_meta.TransferSyntaxUID = _ENCODING_SYNTAX.get(
            ds.original_encoding, ImplicitVRLittleEndian
        )
    uid = ds.file_meta.TransferSyntaxUID
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        raise _error(label, f"unsupported DICOM transfer syntax {uid.name} ({uid})") from None
    if not decoder.is_available:
        plugins = "; ".join(decoder.missing_dependencies)
        raise _error(
            label,
            f"DICOM transfer syntax {uid.name} ({uid}) needs a decoder plugin; "
            f"install one of: {plugins}",
        )


def _monochrome(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    """Modality LUT, then VOI LUT/window (first one) or bit-depth scaling, onto [0, 1]."""
    values = apply_modality_lut(arr, ds)
    voi_lut = ds.get("VOILUTSequence")
    if voi_lut and None not in (voi_lut[0].get("LUTDescriptor"), voi_lut[0].get("LUTData")):
        low, high = 0.0, 2.0 ** int(voi_lut[0].LUTDescriptor[2]) - 1
        values = apply_voi_lut(values, ds, index=0)
    elif ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        low, high = _window_output_range(ds)
        values = apply_voi_lut(values, ds, index=0)
    elif _is_raw_unsigned(ds):
        low, high = 0.0, 2.0 ** int(ds.BitsStored) - 1
    else:
        low, high = float(values.min()), float(values.max())
    if high == low:
        return np.zeros(values.shape, dtype=np.float32)
    return ((values - low) / (high - low)).astype(np.float32)


def _window_output_range(ds: Dataset) -> tuple[float, float]:
    """The output range pydicom's windowing maps onto (stored range after rescale)."""
    modality_lut = ds.get("ModalityLUTSequence")
    bits = int(ds.BitsStored)
    if modality_lut:
        low, high = 0.0, 2.0 ** int(modality_lut[0].LUTDescriptor[2]) - 1
    elif ds.PixelRepresentation == 0:
        low, high = 0.0, 2.0**bits - 1
    else:
        low, high = -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        low, high = low * float(slope) + float(intercept), high * float(slope) + float(intercept)
    return low, high


def _is_raw_unsigned(ds: Dataset) -> bool:
    """Unsigned stored values with no (or an identity) modality transform."""
    return (
        ds.get("PixelRepresentation", 0) == 0
        and not ds.get("ModalityLUTSequence")
        and ds.get("RescaleSlope", 1) == 1
        and ds.get("RescaleIntercept", 0) == 0
    )
