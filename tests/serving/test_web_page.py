"""The web page, end to end in a real browser: Debian's Chromium driven by Playwright plays
a bundled sample into the live stream and shows the frames coming back."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"  # Debian's package (`make browser`); Playwright's own download needs the internet
# no background services: the sandbox refuses their connections
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
SCREENSHOT = Path(os.environ.get("SYNCTALK2D_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts")) / "web_page.png"


def test_page_plays_a_sample_and_shows_the_live_avatar(live_server):
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: run `make browser` (Debian's chromium package)")
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1000, "height": 760})
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(live_server.url("/"))
        page.wait_for_function("!document.getElementById('play-sample').disabled", timeout=30_000)
        assert "mouth conditioning" in page.inner_text("#avatar-info")
        assert page.input_value("#sample").endswith(".wav")
        page.click("#play-sample")
        page.wait_for_function("document.getElementById('latency-first').textContent !== '–'", timeout=30_000)
        page.wait_for_timeout(2000)  # mid-sentence
        frames = int(page.inner_text("#frames"))
        fps = float(page.inner_text("#fps"))
        latency = float(page.inner_text("#latency-first"))
        state = page.inner_text("#state")
        natural = page.evaluate("[document.getElementById('live').naturalWidth, document.getElementById('live').naturalHeight]")
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT))
        browser.close()
    seen = dict(frames=frames, fps=fps, latency=latency, state=state, image=natural, errors=errors)
    assert not errors, seen
    assert state == "speaking" and frames > 40 and 15 <= fps <= 30, seen  # the 12 s sample is still playing, frames stream
    assert natural[0] > 0 and natural[1] > 0, seen  # frames decode as images
    assert 0 < latency < 2000, seen
