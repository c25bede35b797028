"""The served application on a real Ray Serve on 127.0.0.1: answers equal to the library's,
every refusal with its status code, overload, hot swaps, autoscaling, the Serve config file."""

from __future__ import annotations

import base64
import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pydicom
import pytest
import requests
import torch
from PIL import Image
from pydicom.data import get_testdata_file

from radzero import registry
from radzero.data import phantom
from radzero.data.images import load_image
from radzero.inference import decode_rle
from radzero.model.radzero import RadZero
from tests.serving import (
    FINDINGS,
    KEY,
    PHRASES,
    RUNTIME_ENV,
    THRESHOLD,
    register_tiny,
    serve_test_config,
)
from tests.test_images import png_claiming

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def http() -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {KEY}"
    return session


@pytest.fixture(scope="module")
def library(served) -> RadZero:
    """The registered model as the library loads it."""
    return RadZero.from_pretrained("tiny@best", registry=str(served[2])).eval()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, bytes]:
    """A phantom as 8-bit PNG (cropped to 120 x 80: not square), as 16-bit PNG and as
    JPEG, and the CR chest DICOM of pydicom-data."""
    folder = tmp_path_factory.mktemp("phantoms")
    phantom.write_dataset(folder, 2, size=128, seed=5)
    grey = np.asarray(Image.open(sorted(folder.glob("images/*.png"))[0]).convert("L"))
    crop = grey[:120, 20:100]
    out = {}
    for name, image, fmt in (
        ("png", Image.fromarray(crop), "PNG"),
        ("png16", Image.fromarray((crop.astype(np.uint16) * 257).astype(np.uint16)), "PNG"),
        ("jpeg", Image.fromarray(crop), "JPEG"),
    ):
        buffer = io.BytesIO()
        image.save(buffer, format=fmt)
        out[name] = buffer.getvalue()
    out["dicom"] = Path(get_testdata_file("RG1_UNCR.dcm")).read_bytes()
    return out


def _post(http, served, path, image: bytes, name="image.png", **fields):
    files = {"image": (name, image)}
    data = [(k, v) for k, vs in fields.items() for v in (vs if isinstance(vs, list) else [vs])]
    return http.post(served[0] + path, files=files, data=data, timeout=60)


# -- answers ----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["png", "png16", "jpeg", "dicom"])
def test_classify_equals_the_library(served, http, library, images, kind):
    name = "chest.dcm" if kind == "dicom" else f"image.{kind}"
    response = _post(http, served, "/v1/classify", images[kind], name=name, findings=FINDINGS)
    assert response.status_code == 200, response.text
    body = response.json()
    pixels = load_image(images[kind], library.preprocess)[None]
    expected = library.classify(FINDINGS, images=pixels)[0].tolist()
    assert [f["finding"] for f in body["findings"]] == FINDINGS
    assert [f["probability"] for f in body["findings"]] == pytest.approx(expected, abs=1e-5)
    assert body["model"]["name"] == "tiny" and body["model"]["version"] == 1
    assert body["elapsed_ms"] > 0
    height, width = (
        pydicom.dcmread(io.BytesIO(images[kind])).pixel_array.shape
        if kind == "dicom"
        else (120, 80)
    )
    assert body["image"] == {"width": width, "height": height}


def test_json_base64_and_templates(served, http, library, images):
    body = {
        "image": base64.b64encode(images["png"]).decode(),
        "findings": FINDINGS,
        "templates": ["There is {}", "Findings suggest {}"],
    }
    response = http.post(served[0] + "/v1/classify", json=body, timeout=60)
    assert response.status_code == 200, response.text
    pixels = load_image(images["png"], library.preprocess)[None]
    expected = library.classify(FINDINGS, body["templates"], images=pixels)[0].tolist()
    got = [f["probability"] for f in response.json()["findings"]]
    assert got == pytest.approx(expected, abs=1e-5)


def test_ground_peaks_grids_and_overlays(served, http, library, images):
    response = _post(http, served, "/v1/ground", images["png"], phrases=PHRASES, overlays="true")
    assert response.status_code == 200, response.text
    answers = response.json()["phrases"]
    pixels = load_image(images["png"], library.preprocess)[None]
    maps = library.similarity_maps(PHRASES, images=pixels, size=(120, 80))[0]
    grid = library.backbone.grid()
    grids = library.similarity_maps(PHRASES, images=pixels, size=(grid, grid))[0]
    probabilities = library.classify(PHRASES, ["{}"], images=pixels)[0]
    for p, answer in enumerate(answers):
        assert answer["phrase"] == PHRASES[p]
        assert answer["probability"] == pytest.approx(float(probabilities[p]), abs=1e-5)
        assert np.allclose(answer["grid"], grids[p].numpy(), atol=1e-5)
        row, column = divmod(int(torch.argmax(maps[p])), 80)  # an 80 x 120 image
        assert answer["peak"] == {"x": column, "y": row}
        overlay = Image.open(io.BytesIO(base64.b64decode(answer["overlay_png"])))
        assert overlay.format == "PNG" and overlay.size == (80, 120) and overlay.mode == "RGB"


def test_segment_masks_in_the_original_size_at_the_cards_threshold(served, http, library, images):
    response = _post(http, served, "/v1/segment", images["png"], phrases=PHRASES)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["threshold"] == THRESHOLD  # from the card
    pixels = load_image(images["png"], library.preprocess)[None]
    maps = library.similarity_maps(PHRASES, images=pixels, size=(120, 80))[0].numpy()
    for p, answer in enumerate(body["phrases"]):
        mask = decode_rle(answer["rle"])
        expected = maps[p] >= THRESHOLD
        close = np.abs(maps[p] - THRESHOLD) < 1e-5  # pixels on the threshold may flip
        assert mask.shape == (120, 80) and np.array_equal(mask[~close], expected[~close])
        assert answer["pixels"] == int(mask.sum())
        png = np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["mask_png"]))))
        assert np.array_equal(png.astype(bool), mask)
    given = _post(http, served, "/v1/segment", images["png"], phrases=PHRASES, threshold="0.9")
    assert given.json()["threshold"] == 0.9


def test_model_health_and_docs(served, http):
    info = http.get(served[0] + "/v1/model", timeout=30).json()
    assert info["model"]["version"] == 1 and info["resolution"] == 64
    assert info["threshold"] == THRESHOLD and info["threshold_from"] == "card"
    assert info["templates"] == ["There is {}"] and "pleural effusion" in info["findings"]
    assert info["limits"]["max_phrases"] == 4 and info["swap_error"] is None
    health = requests.get(served[0] + "/healthz", timeout=30)  # no key needed
    assert health.status_code == 200 and health.json()["status"] == "ok"
    docs = requests.get(served[0] + "/docs", timeout=30)
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    schema = requests.get(served[0] + "/openapi.json", timeout=30).json()
    assert {"/v1/classify", "/v1/ground", "/v1/segment", "/v1/model", "/healthz"} <= set(
        schema["paths"]
    )
    body = schema["paths"]["/v1/classify"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(body)


# -- refusals ---------------------------------------------------------------------------------
def _dicom_claiming(rows: int, columns: int, frames: int = 1) -> bytes:
    dataset = pydicom.dcmread(get_testdata_file("RG1_UNCR.dcm"))
    dataset.Rows, dataset.Columns = rows, columns
    dataset.NumberOfFrames = frames
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("image", "name", "status", "message"),
    [
        (b"radiology notes, not pixels", "notes.png", 400, "not an image"),
        ("truncated", "cut.png", 400, "truncated"),
        (b"GIF89a" + bytes(40), "x.gif", 400, "image"),
        (png_claiming(50_000, 50_000), "bomb.png", 413, "pixels"),
        ("dicom-huge", "huge.dcm", 413, "60000x60000"),
        ("dicom-frames", "frames.dcm", 413, "frames"),
    ],
)
def test_bad_images_are_refused_with_a_reason(served, http, images, image, name, status, message):
    image = {
        "truncated": images["png"][: len(images["png"]) // 3],
        "dicom-huge": _dicom_claiming(60_000, 60_000),
        "dicom-frames": _dicom_claiming(64, 64, 100_000),
    }.get(image, image)
    response = _post(http, served, "/v1/classify", image, name=name, findings=FINDINGS)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"] and name in response.json()["detail"]


def test_a_body_over_the_limit_is_413(served, http):
    response = _post(http, served, "/v1/classify", bytes(9 * 2**20), findings=FINDINGS)
    assert response.status_code == 413, response.text


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"findings": []}, "findings: give 1 to 4"),
        ({"findings": ["cardiomegaly"] * 5}, "at most 4 allowed"),
        ({"findings": ["x" * 61]}, "at most 60 characters"),
        ({"findings": ["dragon scales"]}, "unknown ['dragon scales']; allowed: "),
        ({"findings": FINDINGS, "colour": "blue"}, "colour: Extra inputs are not permitted"),
    ],
)
def test_bad_fields_are_422_with_what_is_allowed(served, http, images, fields, message):
    response = _post(http, served, "/v1/classify", images["png"], **fields)
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]


def test_bad_requests_never_get_a_500(served, http, images):
    url = served[0]
    checks = [
        (
            http.post(
                url + "/v1/classify", data=b"{", headers={"content-type": "application/json"}
            ),
            400,
            "valid JSON",
        ),
        (
            http.post(url + "/v1/classify", json={"image": "@@@", "findings": FINDINGS}),
            400,
            "base64",
        ),
        (http.post(url + "/v1/classify", json={"findings": FINDINGS}), 422, "image"),
        (
            http.post(url + "/v1/classify", data=b"x", headers={"content-type": "text/plain"}),
            415,
            "multipart",
        ),
        (
            http.post(
                url + "/v1/segment",
                json={
                    "image": base64.b64encode(images["png"]).decode(),
                    "phrases": PHRASES,
                    "threshold": 2,
                },
            ),
            422,
            "threshold",
        ),
        (requests.post(url + "/v1/classify", json={"findings": FINDINGS}), 401, "Bearer"),
        (
            http.post(url + "/v1/classify", json={}, headers={"x-request-timeout-seconds": "0"}),
            400,
            "x-request-timeout-seconds",
        ),
    ]
    for response, status, message in checks:
        assert response.status_code == status, response.text
        assert message in response.text


# -- load -------------------------------------------------------------------------------------
def test_overload_is_503_with_retry_after_and_the_service_recovers(served, http, images):
    def call(_: int) -> requests.Response:
        return _post(http, served, "/v1/classify", images["png"], findings=FINDINGS)

    with ThreadPoolExecutor(48) as pool:
        responses = list(pool.map(call, range(96)))
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503} and 503 in statuses and 200 in statuses
    assert all(r.headers.get("Retry-After") for r in responses if r.status_code == 503)
    time.sleep(2)
    assert all(call(i).status_code == 200 for i in range(4))


def _replicas(name: str) -> int:
    from ray import serve

    status = serve.status().applications[name].deployments["RadZeroModel"]
    return status.replica_states.get("RUNNING", 0)


def test_autoscaling_adds_a_replica_under_load_and_removes_it_after(served, http, images):
    """8 clients against target_ongoing_requests 1: a second replica runs; when the load
    stops, it goes (downscale delay 4 s)."""
    name = served[1].name
    deadline = time.monotonic() + 60
    while _replicas(name) != 1:  # back to one after the tests before
        assert time.monotonic() < deadline, "the model did not scale back to 1 replica"
        time.sleep(1)
    scaled = threading.Event()

    def load(_: int) -> None:
        stop = time.monotonic() + 90
        while not scaled.is_set() and time.monotonic() < stop:
            _post(http, served, "/v1/classify", images["png"], findings=FINDINGS)

    with ThreadPoolExecutor(8) as pool:
        clients = [pool.submit(load, i) for i in range(8)]
        deadline = time.monotonic() + 90
        while _replicas(name) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        scaled.set()
        for client in clients:
            client.result()
    assert time.monotonic() < deadline, "no second replica running within 90 s of load"
    deadline = time.monotonic() + 60
    while _replicas(name) != 1:
        assert time.monotonic() < deadline, "the second replica was not removed within 60 s"
        time.sleep(1)


# -- hot swap ---------------------------------------------------------------------------------
def test_a_new_version_swaps_in_and_a_bad_reference_keeps_the_old(served, http, images):
    """Redeploying with another model in user_config reconfigures the replicas in place."""
    from radzero.platform.serve import deploy

    url, config, root = served
    before = _post(http, served, "/v1/classify", images["png"], findings=FINDINGS).json()
    assert register_tiny(root, 1, {"metrics": {}}) == 2

    def swap(model: str, done) -> dict:
        deploy(serve_test_config(root, config.port, model=model), RUNTIME_ENV)
        deadline = time.monotonic() + 60
        while not done(info := http.get(url + "/v1/model", timeout=30).json()):
            assert time.monotonic() < deadline, f"no swap to {model} within 60 s: {info}"
            time.sleep(0.5)
        return info

    info = swap("tiny@2", lambda info: info["model"]["version"] == 2)
    assert info["swap_error"] is None and info["threshold_from"] == "config"  # no card threshold
    after = _post(http, served, "/v1/classify", images["png"], findings=FINDINGS).json()
    assert after["model"]["version"] == 2 and after["findings"] != before["findings"]

    info = swap("tiny@9", lambda info: info["swap_error"] is not None)
    assert info["model"]["version"] == 2 and info["swap_error"]["model"] == "tiny@9"
    assert "has no version 9" in info["swap_error"]["error"]
    still = _post(http, served, "/v1/classify", images["png"], findings=FINDINGS).json()
    assert still["model"]["version"] == 2 and still["findings"] == after["findings"]
    swap("tiny@best", lambda info: info["model"]["version"] == 1)


def test_the_authors_converted_model_serves_what_the_library_computes(
    served, http, images, tmp_path
):
    """A converted authors' checkpoint, registered as radzero@authors, swapped in: its
    probabilities and peaks are the library's (their preprocessing, their 4.39 positions)."""
    from radzero.model.convert import convert_authors
    from radzero.platform.serve import deploy
    from tests.authors_checkpoint import write_authors_folder

    url, config, root = served
    card = convert_authors(write_authors_folder(tmp_path / "authors"), tmp_path / "converted")
    registry.register(tmp_path / "converted", "radzero", card, root=str(root), aliases=("authors",))
    deploy(serve_test_config(root, config.port, model="radzero@authors"), RUNTIME_ENV)
    try:
        deadline = time.monotonic() + 60
        while http.get(url + "/v1/model", timeout=30).json()["model"]["name"] != "radzero":
            assert time.monotonic() < deadline, "no swap to radzero@authors within 60 s"
            time.sleep(0.5)
        authors = RadZero.from_pretrained("radzero@authors", registry=str(root)).eval()
        pixels = load_image(images["png"], authors.preprocess)[None]
        expected = authors.classify(FINDINGS, images=pixels)[0]
        body = _post(http, served, "/v1/classify", images["png"], findings=FINDINGS).json()
        assert [f["probability"] for f in body["findings"]] == pytest.approx(
            expected.tolist(), abs=1e-5
        )
        grounded = _post(http, served, "/v1/ground", images["png"], phrases=PHRASES).json()
        maps = authors.similarity_maps(PHRASES, images=pixels, size=(120, 80))[0]
        for p, answer in enumerate(grounded["phrases"]):
            row, column = divmod(int(torch.argmax(maps[p])), 80)
            assert answer["peak"] == {"x": column, "y": row}
    finally:
        deploy(serve_test_config(root, config.port), RUNTIME_ENV)
        deadline = time.monotonic() + 60
        while http.get(url + "/v1/model", timeout=30).json()["model"]["name"] != "tiny":
            assert time.monotonic() < deadline, "no swap back to tiny@best within 60 s"
            time.sleep(0.5)
