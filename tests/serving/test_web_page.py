"""The web page, end to end in a real browser: Debian's Chromium driven by Playwright plays
a bundled sample into the live stream and shows the frames coming back."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import pytest

from synctalk2d.serving.app import ServerSettings, create_app
from synctalk2d.serving.avatars import AvatarStore
from tests.serving.fixtures import Server

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
    "--disable-features=WebRtcHideLocalIpsWithMdns",  # plain host candidates: the sandbox has no multicast DNS
]
SCREENSHOT = Path(os.environ.get("SYNCTALK2D_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts")) / "web_page.png"


def require_chromium() -> None:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing: run `make browser` (Debian's chromium package)")


def test_page_plays_a_sample_and_shows_the_live_avatar(live_server):
    require_chromium()
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1000, "height": 760})
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(live_server.url("/"))
        page.select_option("#transport", "websocket")
        page.wait_for_function("!document.getElementById('play-sample').disabled", timeout=30_000)
        assert "mouth conditioning" in page.inner_text("#avatar-info")
        assert page.input_value("#sample").endswith(".wav")
        page.click("#play-sample")
        page.wait_for_function("document.getElementById('latency-first').textContent !== '–'", timeout=30_000)
        page.wait_for_timeout(2000)  # mid-sentence
        # Each frame replaces the image's source, so its size is 0 until that frame decodes:
        # read the size in the same instant it is seen non-zero.
        decoded = "(() => { const img = document.getElementById('live'); return img.naturalWidth > 0 && [img.naturalWidth, img.naturalHeight]; })()"
        natural = page.wait_for_function(decoded, timeout=10_000).json_value()
        frames = int(page.inner_text("#frames"))
        fps = float(page.inner_text("#fps"))
        latency = float(page.inner_text("#latency-first"))
        state = page.inner_text("#state")
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT))
        browser.close()
    seen = dict(frames=frames, fps=fps, latency=latency, state=state, image=natural, errors=errors)
    assert not errors, seen
    assert state == "speaking" and frames > 40 and 15 <= fps <= 30, seen  # the 12 s sample is still playing, frames stream
    assert natural[0] > 0 and natural[1] > 0, seen  # frames decode as images
    assert 0 < latency < 2000, seen


def test_page_speaks_over_webrtc_with_video_and_voice(live_server):
    """The default transport: the sample goes into the call as the page's audio track, the
    avatar's video and voice come back on the same connection."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1000, "height": 760})
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(live_server.url("/"))
        assert page.input_value("#transport") == "webrtc"
        page.wait_for_function("!document.getElementById('play-sample').disabled", timeout=30_000)
        before = page.evaluate("rtcStats()")
        page.click("#play-sample")
        page.wait_for_function("document.getElementById('state').textContent === 'speaking'", timeout=30_000)
        page.wait_for_timeout(2000)  # mid-sentence
        during = page.evaluate("rtcStats()")
        shown = int(page.inner_text("#frames"))
        size = page.evaluate("[document.getElementById('live-video').videoWidth, document.getElementById('live-video').videoHeight]")
        page.screenshot(path=str(SCREENSHOT.with_name("web_page_webrtc.png")))
        browser.close()
    seen = dict(before=before, during=during, shown=shown, size=size, errors=errors)
    assert not errors, seen
    assert during["frames"] - before["frames"] >= 40 and shown >= 40, seen  # 2 s at 25 fps, decoded and shown
    assert during["audioBytes"] > before["audioBytes"] and during["audioEnergy"] > before["audioEnergy"] + 1e-4, seen  # the voice, not silence
    assert size[0] > 0 and size[1] > 0, seen


def test_page_lists_the_avatars_and_streams_the_one_picked(store_dir):
    require_chromium()
    from playwright.sync_api import sync_playwright

    with Server(create_app(AvatarStore(store_dir), ServerSettings())) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page()
        page.goto(server.url("/"))
        page.wait_for_function("!document.getElementById('play-sample').disabled", timeout=30_000)
        options = page.eval_on_selector_all("#avatar option", "options => options.map(o => o.value)")
        page.select_option("#avatar", "bob")
        page.wait_for_function("Number(document.getElementById('frames').textContent) > 10", timeout=30_000)
        visible = page.is_visible("#new-avatar")
        browser.close()
        health = json.loads(urllib.request.urlopen(server.url("/healthz")).read())
    assert options == ["alice", "bob"] and visible, (options, visible)
    assert "bob" in health["avatars_loaded"]
