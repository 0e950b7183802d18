"""The playground in a real browser: headless Chromium driven by Playwright.

The server is ``deltaflow playground`` itself, started as a process. Skips cleanly where
the web extra, Playwright or a Chromium executable is missing.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
sync_api = pytest.importorskip("playwright.sync_api")


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


CHROMIUM = _chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium executable on PATH")


@pytest.fixture(scope="module")
def url():
    import deltaflow

    env = dict(os.environ, PYTHONPATH=str(Path(deltaflow.__file__).parents[1]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "deltaflow", "playground", "--port", "0", "--no-browser"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("deltaflow playground at http://127.0.0.1:"), line + (
            proc.stderr.read() if proc.poll() is not None and proc.stderr else ""
        )
        yield line.split()[3]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser, url):
    pg = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.goto(url)
    pg.wait_for_function("document.querySelector('#loss').textContent !== '-'")
    yield pg
    pg.close()
    assert errors == [], errors


def _number(page, selector: str) -> float:
    return float(page.text_content(selector))


def test_playing_for_a_few_seconds_lowers_the_cost(page):
    first, first_test = _number(page, "#loss"), _number(page, "#test-loss")
    assert _number(page, "#epoch") == 0
    page.click("#train")
    page.wait_for_function(
        "Number(document.querySelector('#epoch').textContent) >= 30", timeout=20000
    )
    page.click("#train")
    page.wait_for_function("!document.querySelector('#train').classList.contains('playing')")
    assert _number(page, "#loss") < 0.6 * first
    assert _number(page, "#test-loss") < 0.8 * first_test


def test_a_step_fills_the_dynamic_programme_panel_with_deltas(page):
    page.click("#step")
    page.wait_for_selector("#dp td.delta")
    caption = page.text_content("#dp-caption")
    assert "training example #" in caption and "step 0" in caption
    # the default network 2-4-2-1: delta^(3) (1 unit), delta^(2) (2), delta^(1) (4)
    deltas = page.eval_on_selector_all(
        "#dp .card:nth-child(-n+2) td.delta", "cells => cells.map(c => c.textContent)"
    )
    assert len(deltas) == 1 + 2 + 4
    values = [float(d.replace("\u2212", "-")) for d in deltas]
    assert all(np.isfinite(values)) and any(v != 0 for v in values)
    reused = page.eval_on_selector_all("#dp .num.reused", "els => els.length")
    assert reused > 0
    # pointing at delta^(3)_0 lights it up in the base case, the recursion and the read-off
    page.hover("#dp .vec .num.reused")
    lit = page.eval_on_selector_all("#dp .hl", "els => els.map(e => e.dataset.ref)")
    assert len(lit) >= 4 and set(lit) == {"3:0"}
    assert "path enumeration" in page.text_content("#dp")
    assert _number(page, "#epoch") == 0  # one mini-batch of 10 is not yet an epoch
    # hovering a hidden unit shows its z, a, g'(z) and delta from the trace
    page.hover("#columns .column:nth-child(2) .node")
    tip = page.text_content("#tooltip")
    assert "z" in tip and "g′(z)" in tip and "δ = ∂C/∂z" in tip


def test_changing_the_data_set_and_the_layers(page):
    page.select_option("#dataset", "spiral")
    page.wait_for_function("document.querySelector('#dataset').value === 'spiral'")
    page.click("#add-layer")
    page.wait_for_function("document.querySelectorAll('#columns .column').length === 5")
    assert page.text_content("#layer-count") == "3 hidden layers"
    # a unit more in the first hidden layer
    page.click("#columns .column:nth-child(2) .units-bar button[data-d='1']")
    page.wait_for_function(
        "document.querySelectorAll('#columns .column:nth-child(2) .node').length === 5"
    )
    page.click("#remove-layer")
    page.click("#remove-layer")
    page.wait_for_function("document.querySelectorAll('#columns .column').length === 3")
    page.select_option("#dataset", "digits")
    page.wait_for_function(
        "document.querySelectorAll('#columns .column:last-child .node').length === 10"
    )
    page.click("#step")
    page.wait_for_selector("#dp td.delta")
    # a digits network is 64 inputs - 5 - 10 outputs: ten deltas in the base case
    base = page.eval_on_selector_all("#dp .card:first-child td.delta", "c => c.length")
    assert base == 10


def _picture(png: bytes) -> np.ndarray:
    import matplotlib.image

    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return matplotlib.image.imread(io.BytesIO(png), format="png")


def test_screenshot_is_a_real_picture_at_both_sizes(page):
    page.click("#train")
    page.wait_for_function(
        "Number(document.querySelector('#epoch').textContent) >= 10", timeout=20000
    )
    page.click("#train")
    page.wait_for_selector("#dp td.delta")
    img = _picture(page.screenshot())
    assert img.shape[:2] == (900, 1400)
    rgb = (img[..., :3] * 255).round().astype(int)
    colours = np.unique((rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2])
    assert colours.size > 500  # heat maps, text and charts, not a blank or one-colour page
    box = page.locator("#boundary").bounding_box()
    x0, y0 = int(box["x"]), int(box["y"])
    region = rgb[y0 + 5 : y0 + int(box["height"]) - 5, x0 + 5 : x0 + int(box["width"]) - 5]
    blue = (region[..., 2] > region[..., 0] + 60).mean()
    orange = (region[..., 0] > region[..., 2] + 60).mean()
    assert blue > 0.05 and orange > 0.05  # both classes' regions of the decision boundary
    # usable at 1024x768: nothing runs off the side, every control is on the page
    page.set_viewport_size({"width": 1024, "height": 768})
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 1024
    for name in ("dataset", "layers", "train", "step", "reset", "loss", "test-loss", "epoch"):
        b = page.locator(f"#{name}").bounding_box()
        assert b is not None and b["x"] >= 0 and b["x"] + b["width"] <= 1024, name
    small = _picture(page.screenshot())
    assert small.shape[:2] == (768, 1024)
