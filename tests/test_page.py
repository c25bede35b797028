"""The served page in Debian's headless chromium: the key, an upload, Ground, Segment, an
example with Classify and an API error, each shown as the API answers it; the bundled
examples are the phantoms that examples.json names."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from PIL import Image
from pydicom.data import get_testdata_file

import radzero
from radzero.data import phantom
from tests.serving import KEY, PHRASES

STATIC = Path(radzero.__file__).parent / "platform" / "serve" / "static"
EXAMPLES = STATIC / "examples"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOT = Path(__file__).resolve().parents[1] / "runs" / "screenshots" / "page.png"
WAIT_S = 60


def test_examples_are_the_phantoms_examples_json_names(tmp_path):
    listing = json.loads((EXAMPLES / "examples.json").read_text())["examples"]
    assert len(listing) == 3
    for example in listing:
        source = example["phantom"]
        assert source["generator_version"] == phantom.GENERATOR_VERSION
        folder = tmp_path / f"{source['seed']}-{source['count']}-{source['size']}"
        if not folder.exists():
            phantom.write_dataset(folder, source["count"], size=source["size"], seed=source["seed"])
        row = pd.read_csv(folder / "manifest.csv").iloc[source["index"]]
        path = EXAMPLES / example["file"]
        assert path.stat().st_size < 80_000
        shown = np.asarray(Image.open(path))
        assert shown.shape == (source["size"], source["size"])
        assert np.array_equal(shown, np.asarray(Image.open(folder / row["image"])))
        assert example["findings"] == [name for name in phantom.FINDINGS if row[name] == 1]
    assert {"pleural effusion", "pneumothorax", "cardiomegaly"} <= {
        name for example in listing for name in example["findings"]
    }


def test_the_page_loads_nothing_from_elsewhere():
    for name in ("index.html", "app.js", "style.css"):
        text = (STATIC / name).read_text()
        assert not re.search(r"(?:https?:)?//[a-z0-9-]+\.[a-z]", text, re.IGNORECASE), name
        assert "@import" not in text and "url(" not in text, name


def _browser(request: pytest.FixtureRequest):
    """Headless chromium driven by selenium, quit when the test ends. Fails the test (does
    not skip it) when chromium is not installed, unless RADZERO_SKIP_BROWSER=1."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        if os.environ.get("RADZERO_SKIP_BROWSER") == "1":
            pytest.skip(f"RADZERO_SKIP_BROWSER=1 and {', '.join(missing)} missing")
        pytest.fail(
            f"{', '.join(missing)} missing: run `make browser` (Debian's chromium and "
            "chromium-driver), or set RADZERO_SKIP_BROWSER=1 to skip the page test",
            pytrace=False,
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    request.addfinalizer(driver.quit)
    return driver


def _api(served, task: str, image: bytes, name: str, **fields) -> dict:
    data = [(key, value) for key, values in fields.items() for value in values]
    response = requests.post(
        f"{served[0]}/v1/{task}",
        files={"image": (name, image)},
        data=data,
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=60,
    )
    response.raise_for_status()
    return response.json()


def _loaded(driver, selector: str, count: int) -> bool:
    """``count`` images match ``selector`` and all of them are decoded."""
    return driver.execute_script(
        "const images = [...document.querySelectorAll(arguments[0])];"
        "return images.length === arguments[1]"
        " && images.every((image) => image.complete && image.naturalWidth > 0);",
        selector,
        count,
    )


def _texts(driver, selector: str) -> list[str]:
    from selenium.webdriver.common.by import By

    return [node.text for node in driver.find_elements(By.CSS_SELECTOR, selector)]


def _click(driver, element_id: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, element_id).click()


@pytest.mark.slow
def test_the_page_shows_what_the_api_answers(request, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _browser(request)
    # The application only once the browser is there: a missing chromium fails in seconds.
    served = request.getfixturevalue("served")
    wait = WebDriverWait(driver, WAIT_S)
    base = served[0]
    driver.get(f"{base}/")

    # /v1/model answers 401 without the key: the key box shows the API's message.
    wait.until(lambda d: d.find_element(By.ID, "key-box").is_displayed())
    wait.until(lambda d: "Authorization: Bearer" in d.find_element(By.ID, "key-message").text)
    driver.find_element(By.ID, "api-key").send_keys(KEY)
    _click(driver, "key-save")
    wait.until(lambda d: "tiny v1" in d.find_element(By.ID, "model-line").text)
    assert driver.execute_script("return sessionStorage.getItem('radzero-api-key')") == KEY
    offered = requests.get(
        f"{base}/v1/model", headers={"Authorization": f"Bearer {KEY}"}, timeout=60
    ).json()["findings"]
    wait.until(lambda d: _texts(d, "#findings-list li") == offered[:12])
    assert (
        driver.find_element(By.ID, "findings-more").text
        == f"{len(offered) - 12} more: type to filter."
    )
    driver.find_element(By.ID, "findings-filter").send_keys("thorax")
    wait.until(lambda d: _texts(d, "#findings-list li") == [n for n in offered if "thorax" in n])
    driver.find_element(By.ID, "findings-filter").send_keys(Keys.BACKSPACE * len("thorax"))
    wait.until(lambda d: len(_texts(d, "#findings-list li")) == 12)

    # A DICOM, which the browser cannot draw: Segment shows the masks alone.
    driver.find_element(By.ID, "phrases").send_keys("\n".join(PHRASES))
    driver.find_element(By.ID, "image-input").send_keys(get_testdata_file("RG1_UNCR.dcm"))
    wait.until(lambda d: "no preview" in d.find_element(By.ID, "image-name").text)
    _click(driver, "segment-button")
    wait.until(lambda d: _loaded(d, "#segment-result img.mask", len(PHRASES)))
    assert _texts(driver, "#segment-result .panel-meta")[0].startswith("1841 × 1955 px")
    assert not driver.find_elements(By.CSS_SELECTOR, "#segment-result img.base")

    # A PNG upload, grounded: the overlays load, captioned with the API's numbers.
    phantom.write_dataset(tmp_path / "phantom", 1, size=128, seed=3)
    upload = tmp_path / "phantom" / "images" / "000000.png"
    image = upload.read_bytes()
    driver.find_element(By.ID, "image-input").send_keys(str(upload))
    wait.until(lambda d: _loaded(d, "#preview-image", 1))
    _click(driver, "ground-button")
    wait.until(lambda d: _loaded(d, "#ground-result img.overlay", len(PHRASES)))
    grounded = _api(served, "ground", image, upload.name, phrases=PHRASES)["phrases"]
    assert _texts(driver, "#ground-result .phrase") == PHRASES
    assert _texts(driver, "#ground-result .probability") == [
        f"{item['probability']:.3f}" for item in grounded
    ]
    assert _texts(driver, "#ground-result .peak") == [
        f"peak at ({item['peak']['x']}, {item['peak']['y']})" for item in grounded
    ]
    assert "Ground took" in driver.find_element(By.ID, "timing-line").text

    # Segment: each mask drawn over the uploaded image, with the API's pixel count.
    _click(driver, "segment-button")
    wait.until(lambda d: upload.name in d.find_element(By.CSS_SELECTOR, "#segment-result h2").text)
    wait.until(lambda d: _loaded(d, "#segment-result img.mask", len(PHRASES)))
    assert _loaded(driver, "#segment-result img.base", len(PHRASES))
    segmented = _api(served, "segment", image, upload.name, phrases=PHRASES)["phrases"]
    assert [text.split(" px")[0] for text in _texts(driver, "#segment-result .pixels")] == [
        str(item["pixels"]) for item in segmented
    ]

    # An example: its known findings get checked, and Classify tabulates the API's answer.
    example = json.loads((EXAMPLES / "examples.json").read_text())["examples"][0]
    driver.find_element(By.CSS_SELECTOR, f'.example[data-file="{example["file"]}"]').click()
    wait.until(lambda d: d.find_element(By.ID, "image-name").text == example["file"])
    checked = driver.execute_script(
        "return [...document.querySelectorAll('#findings-list input:checked')]"
        ".map((box) => box.value);"
    )
    assert checked == example["findings"]
    extra = driver.find_element(By.CSS_SELECTOR, '#findings-list input[value="cardiomegaly"]')
    extra.click()
    _click(driver, "classify-button")
    wait.until(lambda d: len(_texts(d, "#classify-table tbody tr")) == len(checked) + 1)
    classified = _api(
        served,
        "classify",
        (EXAMPLES / example["file"]).read_bytes(),
        example["file"],
        findings=[*checked, "cardiomegaly"],
    )["findings"]
    expected = sorted(classified, key=lambda item: -item["probability"])
    assert _texts(driver, "#classify-table td.finding") == [item["finding"] for item in expected]
    assert _texts(driver, "#classify-table td.probability") == [
        f"{item['probability']:.3f}" for item in expected
    ]
    assert example["file"] in driver.find_element(By.CSS_SELECTOR, "#classify-result h2").text

    # An API error shows in the alert box, results stay.
    phrases = driver.find_element(By.ID, "phrases")
    phrases.clear()
    phrases.send_keys("\n".join(f"phrase {n}" for n in range(5)))
    _click(driver, "ground-button")
    wait.until(lambda d: d.find_element(By.ID, "error").is_displayed())
    error = driver.find_element(By.ID, "error")
    assert error.get_attribute("role") == "alert"
    assert error.text == "Error 422: phrases: 5 given, at most 4 allowed"
    assert len(_texts(driver, "#results .panel")) == 3

    # Everything the page loaded came from the app itself.
    resources = driver.execute_script(
        "return performance.getEntriesByType('resource').map((entry) => entry.name);"
    )
    assert resources and all(url.startswith(base) for url in resources), resources

    # The whole page in one screenshot: the window grown to the page's height.
    chrome, height = driver.execute_script(
        "window.scrollTo(0, 0);"
        "return [window.outerHeight - window.innerHeight, document.documentElement.scrollHeight];"
    )
    driver.set_window_size(1400, max(1000, chrome + height))
    shot = tmp_path / "page.png"
    assert driver.save_screenshot(str(shot))
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, SCREENSHOT)
