"""Tests for radzero.data.images: decoding radiographs and turning them into backbone input."""

from __future__ import annotations

import io
import math
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from PIL import Image, ImageFile
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    ExplicitVRLittleEndian,
    JPEGLosslessSV1,
    generate_uid,
)

from radzero.data.images import MAX_PIXELS, ImageTooLarge, load_image, read_image, to_pixels
from radzero.model.preprocess import PreprocessConfig

RNG = np.random.default_rng(0)


def _save(img: Image.Image, path: Path, fmt: str = "PNG", **kwargs) -> Path:
    img.save(path, fmt, **kwargs)
    return path


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _dicom(pixels: np.ndarray, **attrs) -> Dataset:
    """A minimal CR dataset holding ``pixels`` (frames, H, W) or (H, W), 16-bit."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ComputedRadiographyImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "CR"
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.PixelRepresentation = int(pixels.dtype.kind == "i")
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.HighBit = ds.BitsStored - 1
    ds.PixelData = pixels.tobytes()
    return ds


def _write_dicom(path: Path, pixels: np.ndarray, **attrs) -> Path:
    _dicom(pixels, **attrs).save_as(path, enforce_file_format=True)
    return path


def _ramp(height: int = 32, width: int = 64, top: int = 4095) -> np.ndarray:
    return np.linspace(0, top, height * width).round().astype(np.uint16).reshape(height, width)


def png_claiming(width: int, height: int) -> bytes:
    """A valid 8-bit grey PNG header claiming ``width`` x ``height`` with one row of pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(bytes(width + 1), 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if Pillow or pydicom starts decoding pixels."""

    def decoded(*args: object, **kwargs: object) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(Image.Image, "load", decoded)
    monkeypatch.setattr(ImageFile.ImageFile, "load", decoded)
    monkeypatch.setattr(Dataset, "pixel_array", property(decoded))


# --- PNG / JPEG -------------------------------------------------------------------------------


def test_grey_png_round_trip(tmp_path: Path) -> None:
    pixels = RNG.integers(0, 256, (48, 64), dtype=np.uint8)
    gray = read_image(_save(Image.fromarray(pixels), tmp_path / "a.png"))
    assert gray.shape == (48, 64) and gray.dtype == np.float32
    np.testing.assert_allclose(gray, pixels / 255, atol=1 / 255)


def test_sixteen_bit_png_keeps_full_precision(tmp_path: Path) -> None:
    ramp = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    gray = read_image(_save(Image.fromarray(ramp), tmp_path / "ramp16.png"))
    assert gray[0, 0] == 0.0 and gray[-1, -1] == 1.0
    assert gray[0, 1] > gray[0, 0]
    assert np.unique(gray).size == 65536
    np.testing.assert_allclose(gray, ramp / 65535, atol=1e-7)


def test_32_bit_integer_mode_scaled_as_16_bit(tmp_path: Path) -> None:
    pixels = np.arange(16 * 20, dtype=np.int32).reshape(16, 20) * 200
    gray = read_image(_save(Image.fromarray(pixels), tmp_path / "i.tif", "TIFF"))
    np.testing.assert_allclose(gray, pixels / 65535, atol=1e-7)
    pixels[0, 0] = 70000
    with pytest.raises(ValueError, match="16-bit range"):
        read_image(_save(Image.fromarray(pixels), tmp_path / "big.tif", "TIFF"))


def test_jpeg(tmp_path: Path) -> None:
    pixels = np.add.outer(np.arange(64), np.arange(80)).astype(np.uint8)
    gray = read_image(_save(Image.fromarray(pixels), tmp_path / "a.jpg", "JPEG", quality=95))
    assert gray.shape == (64, 80) and gray.dtype == np.float32
    assert np.abs(gray - pixels / 255).mean() < 2 / 255


def test_rgb_converted_by_luminance(tmp_path: Path) -> None:
    rgb = np.zeros((24, 30, 3), dtype=np.uint8)
    rgb[:8, :, 0] = rgb[8:16, :, 1] = rgb[16:, :, 2] = 255
    gray = read_image(_save(Image.fromarray(rgb), tmp_path / "rgb.png"))
    np.testing.assert_allclose(gray[[0, 8, 16], 0], [0.299, 0.587, 0.114], atol=1e-6)


def test_grey_stored_as_rgb_is_unchanged(tmp_path: Path) -> None:
    pixels = RNG.integers(0, 256, (20, 20), dtype=np.uint8)
    rgb = Image.fromarray(np.repeat(pixels[..., None], 3, axis=2))
    np.testing.assert_allclose(read_image(_save(rgb, tmp_path / "g.png")), pixels / 255, atol=1e-5)


def test_opaque_rgba_accepted(tmp_path: Path) -> None:
    rgb = RNG.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    rgba = np.concatenate([rgb, np.full((20, 24, 1), 255, np.uint8)], axis=2)
    expected = read_image(_save(Image.fromarray(rgb), tmp_path / "rgb.png"))
    np.testing.assert_array_equal(
        read_image(_save(Image.fromarray(rgba), tmp_path / "a.png")), expected
    )


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparent_images_rejected(tmp_path: Path, mode: str) -> None:
    img = Image.new(mode, (20, 20), (128,) * (len(mode) - 1) + (255,))
    img.putpixel((3, 3), (128,) * (len(mode) - 1) + (0,))
    path = _save(img, tmp_path / "t.png")
    with pytest.raises(ValueError, match=r"t\.png.*transparent.*ambiguous"):
        read_image(path)


def test_palette_and_la_converted(tmp_path: Path) -> None:
    pixels = RNG.integers(0, 256, (20, 20), dtype=np.uint8)
    grey = Image.fromarray(pixels)
    palette = read_image(_save(grey.convert("P"), tmp_path / "p.png"))
    la = read_image(_save(grey.convert("LA"), tmp_path / "la.png"))
    np.testing.assert_allclose(palette, pixels / 255, atol=1e-5)
    np.testing.assert_allclose(la, pixels / 255, atol=1e-6)


def test_bytes_input(tmp_path: Path) -> None:
    pixels = RNG.integers(0, 256, (20, 30), dtype=np.uint8)
    gray = read_image(_png_bytes(Image.fromarray(pixels)), name="s3://bucket/a.png")
    np.testing.assert_allclose(gray, pixels / 255, atol=1e-6)
    with pytest.raises(ValueError, match=re.escape("s3://bucket/b.png")):
        read_image(b"definitely not an image", name="s3://bucket/b.png")


def test_truncated_png_rejected(tmp_path: Path) -> None:
    data = _png_bytes(Image.fromarray(RNG.integers(0, 256, (128, 128), dtype=np.uint8)))
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*truncated"):
        read_image(path)


@pytest.mark.parametrize(
    ("content", "reason"), [(b"", "empty file"), (b"patient notes\n" * 20, "not an image")]
)
def test_non_images_rejected(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "x.png"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + reason):
        read_image(path)


@pytest.mark.parametrize("size", [(1, 1), (15, 64)])
def test_tiny_image_rejected(tmp_path: Path, size: tuple[int, int]) -> None:
    path = _save(Image.new("L", size), tmp_path / "tiny.png")
    with pytest.raises(ValueError, match=r"tiny\.png.*at least 16"):
        read_image(path)


def test_constant_image_accepted(tmp_path: Path) -> None:
    gray = read_image(_save(Image.new("L", (20, 20), 7), tmp_path / "c.png"))
    np.testing.assert_allclose(gray, 7 / 255)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.png"):
        read_image(tmp_path / "nope.png")


def test_too_large_is_a_value_error() -> None:
    assert issubclass(ImageTooLarge, ValueError)  # preprocessing quarantines ValueErrors
    assert MAX_PIXELS == 64 * 2**20


def testpng_claiming_50000_squared_refused_without_decoding(
    tmp_path: Path, no_decoding: None
) -> None:
    data = png_claiming(50_000, 50_000)
    assert len(data) < 500
    path = tmp_path / "bomb.png"
    path.write_bytes(data)
    with pytest.raises(ImageTooLarge, match=r"bomb\.png.*2500000000 pixels"):
        read_image(path)


def test_png_over_default_limit_refused_without_decoding(no_decoding: None) -> None:
    side = 9000
    assert MAX_PIXELS < side * side <= Image.MAX_IMAGE_PIXELS  # our limit, not Pillow's
    message = r"big\.png: header claims 9000x9000 = 81000000 pixels, over the limit of 67108864"
    with pytest.raises(ImageTooLarge, match=message):
        read_image(png_claiming(side, side), name="big.png")


def test_pillow_bomb_warning_is_an_error_only_inside_read_image(no_decoding: None) -> None:
    side = math.isqrt(Image.MAX_IMAGE_PIXELS) + 1
    assert Image.MAX_IMAGE_PIXELS < side * side <= 2 * Image.MAX_IMAGE_PIXELS
    data = png_claiming(side, side)
    with pytest.raises(ImageTooLarge, match=rf"warn\.png.*{side * side} pixels"):
        read_image(data, name="warn.png", max_pixels=10 * side * side)
    with pytest.warns(Image.DecompressionBombWarning):
        Image.open(io.BytesIO(data)).close()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_custom_pixel_limit(tmp_path: Path, fmt: str) -> None:
    limit = 100 * 100
    wide = _save(Image.new("L", (101, 100), 90), tmp_path / "wide.img", fmt)
    with pytest.raises(ImageTooLarge, match=r"wide\.img.*101x100 = 10100 pixels.*limit of 10000"):
        read_image(wide, max_pixels=limit)
    square = _save(Image.new("L", (100, 100), 90), tmp_path / "square.img", fmt)
    assert read_image(square, max_pixels=limit).shape == (100, 100)
    with pytest.raises(ImageTooLarge, match=r"100x100 = 10000 pixels.*limit of 9999"):
        load_image(square, PreprocessConfig(image_size=32), max_pixels=limit - 1)


# --- DICOM ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chest() -> tuple[np.ndarray, np.ndarray]:
    """The pydicom-data CR chest radiograph (MONOCHROME1, 15 bits stored): (raw, decoded)."""
    path = get_testdata_file("RG1_UNCR.dcm")
    return pydicom.dcmread(path).pixel_array, read_image(path)


def test_chest_cr_shape_and_range(chest: tuple[np.ndarray, np.ndarray]) -> None:
    _, gray = chest
    assert gray.shape == (1955, 1841) and gray.dtype == np.float32
    assert 0.0 <= gray.min() < gray.max() <= 1.0


def test_chest_cr_monochrome1_inverted(chest: tuple[np.ndarray, np.ndarray]) -> None:
    raw, gray = chest
    corr = np.corrcoef(raw[::4, ::4].ravel(), gray[::4, ::4].ravel())[0, 1]
    assert corr < -0.9


def test_chest_cr_lungs_darker_than_mediastinum(chest: tuple[np.ndarray, np.ndarray]) -> None:
    _, gray = chest
    height, width = gray.shape
    rows = slice(height // 4, height // 2)
    left = gray[rows, int(width * 0.2) : int(width * 0.35)].mean()
    centre = gray[rows, int(width * 0.45) : int(width * 0.55)].mean()
    right = gray[rows, int(width * 0.65) : int(width * 0.8)].mean()
    assert left < centre - 0.1 and right < centre - 0.1


def test_truncated_dicom_rejected(tmp_path: Path) -> None:
    data = Path(get_testdata_file("RG1_UNCR.dcm")).read_bytes()
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=re.escape(str(path))):
        read_image(path)


def test_dicom_bits_stored_scaling(tmp_path: Path) -> None:
    ramp = _ramp()
    gray = read_image(_write_dicom(tmp_path / "m2.dcm", ramp, BitsStored=12))
    assert gray.shape == ramp.shape and gray.dtype == np.float32
    assert gray.min() == 0.0 and gray.max() == pytest.approx(1.0)
    np.testing.assert_allclose(gray, ramp / 4095, atol=1e-6)


def test_dicom_window_applied(tmp_path: Path) -> None:
    ramp = _ramp()
    path = _write_dicom(tmp_path / "w.dcm", ramp, BitsStored=12, WindowCenter=1000, WindowWidth=800)
    gray = read_image(path)
    assert np.all(gray[ramp <= 600] == 0.0) and np.all(gray[ramp >= 1400] == 1.0)
    middle = (ramp > 700) & (ramp < 1300)
    np.testing.assert_allclose(gray[middle], (ramp[middle] - 600) / 800, atol=2e-3)


def test_dicom_first_of_several_windows(tmp_path: Path) -> None:
    ramp = _ramp()
    attrs = {"BitsStored": 12, "WindowCenter": [1000, 3000], "WindowWidth": [800, 100]}
    gray = read_image(_write_dicom(tmp_path / "w2.dcm", ramp, **attrs))
    assert np.all(gray[ramp >= 1400] == 1.0) and np.all(gray[ramp <= 600] == 0.0)


def test_dicom_monochrome1_inverted(tmp_path: Path) -> None:
    ramp = _ramp()
    gray = read_image(
        _write_dicom(
            tmp_path / "m1.dcm", ramp, BitsStored=12, PhotometricInterpretation="MONOCHROME1"
        )
    )
    np.testing.assert_allclose(gray, 1 - ramp / 4095, atol=1e-6)
    assert gray[0, 0] == pytest.approx(1.0) and gray[-1, -1] == pytest.approx(0.0)


def test_dicom_signed_rescaled_min_max(tmp_path: Path) -> None:
    pixels = _ramp().astype(np.int16) - 2000
    path = _write_dicom(tmp_path / "ct.dcm", pixels, RescaleSlope=2, RescaleIntercept=-1024)
    gray = read_image(path)
    np.testing.assert_allclose(gray, (pixels - pixels.min()) / np.ptp(pixels), atol=1e-6)


def test_dicom_colour_converted_to_grey() -> None:
    path = get_testdata_file("SC_rgb.dcm")
    rgb = pydicom.dcmread(path).pixel_array / 255
    expected = rgb @ np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(read_image(path), expected, atol=1e-5)


def test_dicom_multi_frame_rejected(tmp_path: Path, no_decoding: None) -> None:
    frames = np.stack([_ramp(), _ramp()])
    path = _write_dicom(tmp_path / "mf.dcm", frames, NumberOfFrames=2)
    with pytest.raises(ValueError, match=r"mf\.dcm.*multi-frame"):
        read_image(path)


def _dicom_bytes(ds: Dataset, preamble: bool) -> bytes:
    buf = io.BytesIO()
    if preamble:
        ds.save_as(buf, enforce_file_format=True)
    else:
        del ds.file_meta
        ds.save_as(buf, implicit_vr=True, little_endian=True, enforce_file_format=False)
    return buf.getvalue()


@pytest.mark.parametrize("preamble", [True, False])
def test_dicom_claiming_60000_squared_refused_without_decoding(
    no_decoding: None, preamble: bool
) -> None:
    data = _dicom_bytes(_dicom(_ramp(), Rows=60_000, Columns=60_000), preamble)
    assert len(data) < 10_000
    with pytest.raises(ImageTooLarge, match=r"x\.dcm.*60000x60000 = 3600000000 pixels"):
        read_image(data, name="x.dcm")


def test_dicom_million_frames_refused_without_decoding(no_decoding: None) -> None:
    data = _dicom_bytes(_dicom(_ramp(), NumberOfFrames=1_000_000), preamble=True)
    with pytest.raises(ImageTooLarge, match=r"x\.dcm.*64x32x1000000 frames"):
        read_image(data, name="x.dcm")


@pytest.mark.parametrize(
    ("attrs", "field"),
    [
        ({"BitsAllocated": 7, "BitsStored": 7}, "BitsAllocated is 7"),
        ({"SamplesPerPixel": 2}, "SamplesPerPixel is 2"),
        ({"Rows": 0}, "Rows is 0"),
        ({"NumberOfFrames": -3}, "NumberOfFrames is -3"),
    ],
)
def test_dicom_invalid_geometry_named(no_decoding: None, attrs: dict, field: str) -> None:
    data = _dicom_bytes(_dicom(_ramp(), **attrs), preamble=True)
    with pytest.raises(ValueError, match=rf"x\.dcm: DICOM {field}") as caught:
        read_image(data, name="x.dcm")
    assert not isinstance(caught.value, ImageTooLarge)


def test_dicom_without_preamble_needs_dcm_name() -> None:
    ds = _dicom(_ramp(), BitsStored=12)
    del ds.file_meta
    buf = io.BytesIO()
    ds.save_as(buf, implicit_vr=True, little_endian=True, enforce_file_format=False)
    np.testing.assert_allclose(read_image(buf.getvalue(), name="s3://b/x.dcm"), _ramp() / 4095)
    with pytest.raises(ValueError, match=r"x\.bin.*not an image"):
        read_image(buf.getvalue(), name="s3://b/x.bin")


def test_dicom_compressed_without_plugin(tmp_path: Path) -> None:
    if get_decoder(JPEGLosslessSV1).is_available:
        pytest.skip("a JPEG Lossless decoder plugin is installed")
    ds = _dicom(np.zeros((32, 32), np.uint16))
    ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds.save_as(tmp_path / "j.dcm", enforce_file_format=True)
    with pytest.raises(ValueError, match=r"j\.dcm.*JPEG Lossless.*install.*pylibjpeg"):
        read_image(tmp_path / "j.dcm")


# --- to_pixels / load_image -------------------------------------------------------------------


@pytest.mark.parametrize("size", [224, 518])
def test_to_pixels_shape(size: int) -> None:
    pixels = to_pixels(RNG.random((300, 260)).astype(np.float32), PreprocessConfig(image_size=size))
    assert pixels.shape == (3, size, size) and pixels.dtype == torch.float32
    torch.testing.assert_close(pixels[0] * 0.229 + 0.485, pixels[2] * 0.225 + 0.406)


def test_to_pixels_resizes_non_square_directly() -> None:
    gray = np.zeros((40, 80), np.float32)
    gray[:, :20] = 1.0
    plane = to_pixels(gray, PreprocessConfig(image_size=64, mean=(0.0,), std=(1.0,), channels=1))[0]
    torch.testing.assert_close(plane, plane[:1].expand(64, 64))
    assert plane[0, :15].min() > 0.99 and plane[0, 17:].max() < 0.01


def test_to_pixels_normalisation() -> None:
    gray = RNG.random((224, 224)).astype(np.float32)
    cfg = PreprocessConfig(image_size=224, mean=(0.1, 0.5, 0.9), std=(0.2, 0.3, 0.4))
    pixels = to_pixels(gray, cfg)
    for channel, (mean, std) in enumerate(zip(cfg.mean, cfg.std, strict=True)):
        expected = (torch.from_numpy(gray) - mean) / std
        torch.testing.assert_close(pixels[channel], expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((3, 32, 32), np.float32),
        np.zeros(32, np.float32),
        np.zeros((0, 32), np.float32),
        np.zeros((32, 32), np.uint8),
    ],
)
def test_to_pixels_rejects_bad_input(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"\(H, W\) float"):
        to_pixels(bad, PreprocessConfig())


def test_load_image(tmp_path: Path) -> None:
    path = _save(Image.new("L", (50, 40), 255), tmp_path / "white.png")
    pixels = load_image(path, PreprocessConfig(image_size=32, mean=(0.5,), std=(0.25,), channels=1))
    assert pixels.shape == (1, 32, 32)
    torch.testing.assert_close(pixels, torch.full((1, 32, 32), 2.0))
