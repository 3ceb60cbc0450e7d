"""The scanner page in real headless Chromium: choose a domain, upload a photo, read the result.

Drives Debian's ``chromium`` (``/usr/bin/chromium``, or ``$TAGTELLER_CHROMIUM``) with Playwright's
Python package; Playwright's own browser download is never used. ``scripts/install-browser-deps.sh``
installs both; without them these tests skip and say why. The server is a real uvicorn on a free
127.0.0.1 port, in a thread. ``$TAGTELLER_SERVE_SCREENSHOT`` names where the phone screenshot goes
(default: the test's temporary folder).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="needs the [serve] extra (fastapi)")
pytest.importorskip("uvicorn", reason="needs the [serve] extra (uvicorn)")
playwright_api = pytest.importorskip(
    "playwright.sync_api",
    reason="needs the Python playwright package: run scripts/install-browser-deps.sh",
)
CHROMIUM = Path(os.environ.get("TAGTELLER_CHROMIUM", "/usr/bin/chromium"))
if not CHROMIUM.is_file():
    pytest.skip(f"needs Chromium at {CHROMIUM} (Debian package `chromium`): run scripts/install-browser-deps.sh",
                allow_module_level=True)

import uvicorn  # noqa: E402

import tagteller  # noqa: E402
from tagteller import Domain, plugins  # noqa: E402
from tagteller.engine import Engine  # noqa: E402
from tagteller.serve.app import create_app  # noqa: E402
from tests.builders import colour_model, solid_image  # noqa: E402
from tests.test_serve_api import register_serve_domains  # noqa: E402

expect = playwright_api.expect

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}


class ShadesPlugin:
    """A second working domain, so that choosing the domain matters: light or dark (grayscale)."""

    def __init__(self, model: Path) -> None:
        self.model = model

    @tagteller.hookimpl
    def register_domains(self, register):
        register(Domain(name="shades", description="Light or dark, by brightness.", labels=("light", "dark"),
                        model_path=self.model))


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as pw:
        try:
            chromium = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        except playwright_api.Error as exc:
            pytest.skip(f"Chromium at {CHROMIUM} does not start under Playwright: {str(exc).splitlines()[0]}")
        yield chromium
        chromium.close()


@pytest.fixture
def server_url(tmp_path, monkeypatch):
    """A real uvicorn serving the app on a free 127.0.0.1 port, in a thread."""
    register_serve_domains(tmp_path, monkeypatch)
    shades = colour_model(tmp_path / "shades.onnx", domain="shades", labels=("light", "dark"), color_mode="L")
    plugins.register_plugin(ShadesPlugin(shades), "serve-test-shades")
    app = create_app(engine=Engine(intra_threads=1), max_upload_bytes=256 * 1024)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(timeout=10)
    assert not thread.is_alive(), "uvicorn did not stop"


@pytest.fixture
def page(browser):
    context = browser.new_context()
    context.set_default_timeout(10_000)
    page = context.new_page()
    console_errors: list[str] = []
    page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: console_errors.append(str(exc)))
    page.on("response", lambda r: console_errors.append(f"{r.status} {r.url}")
            if r.status >= 400 and "/v1/scan" not in r.url else None)
    page.console_errors = console_errors  # type: ignore[attr-defined]
    yield page
    context.close()


def open_scanner(page, url: str) -> None:
    page.goto(url)
    expect(page.locator("#domain option[value='colours']")).to_be_attached()


def test_choose_domain_upload_and_read_the_prediction(page, server_url, tmp_path):
    open_scanner(page, server_url)
    photo = page.locator("#photo")
    expect(photo).to_have_attribute("accept", "image/*")
    expect(photo).to_have_attribute("capture", "environment")
    # Domains without a usable model are listed but cannot be chosen.
    for name in ("no-model", "broken-model", "wrong-model"):
        expect(page.locator(f"#domain option[value='{name}']")).to_be_disabled()

    page.select_option("#domain", "colours")
    page.set_input_files("#photo", str(solid_image(tmp_path / "red.png", (230, 10, 10))))
    expect(page.locator("#label")).to_have_text("red")
    expect(page.locator("#confidence")).to_have_text("100%")
    expect(page.locator(".prediction")).to_have_count(3)
    expect(page.locator(".prediction .bar").first).to_have_attribute("aria-valuenow", "100")
    expect(page.locator("#meta")).to_contain_text("colours model v7")
    assert page.locator("#error").is_hidden()

    # The chosen domain is what the server scans with.
    page.select_option("#domain", "shades")
    expect(page.locator("#domain-description")).to_have_text("Light or dark, by brightness.")
    page.set_input_files("#choose", str(solid_image(tmp_path / "night.jpg", (5, 5, 5))))
    expect(page.locator("#label")).to_have_text("dark")
    expect(page.locator(".prediction")).to_have_count(2)
    expect(page.locator("#meta")).to_contain_text("shades model")
    assert page.console_errors == []


def test_unsure_result_and_errors_are_shown_as_text(page, server_url, tmp_path):
    open_scanner(page, server_url)
    page.select_option("#domain", "colours")
    page.fill("#price", "12.50")
    page.set_input_files("#photo", str(solid_image(tmp_path / "grey.png", (128, 128, 128))))
    expect(page.locator("#confidence")).to_have_text("not sure: 33%")
    expect(page.locator("#meta")).to_contain_text("asking price 12.5")

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"these bytes are not a picture")
    page.set_input_files("#photo", str(broken))
    error = page.locator("#error")
    expect(error).to_be_visible()
    expect(error).to_have_text("Could not scan broken.png: not a recognised image format")
    expect(page.locator("#result")).to_be_hidden()

    big = tmp_path / "huge.png"
    big.write_bytes(b"\0" * (300 * 1024))
    page.set_input_files("#photo", str(big))
    expect(error).to_contain_text("huge.png is 300 KB; the server accepts at most 256 KB")

    # A good scan afterwards clears the error.
    page.set_input_files("#photo", str(solid_image(tmp_path / "blue.png", (0, 0, 255))))
    expect(page.locator("#label")).to_have_text("blue")
    expect(error).to_be_hidden()


def test_phone_viewport_fits_and_screenshot(browser, server_url, tmp_path):
    context = browser.new_context(**PHONE)
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        open_scanner(page, server_url)
        page.select_option("#domain", "colours")
        # A muted brown: red wins, but not by everything, so the bars differ in length.
        page.set_input_files("#photo", str(solid_image(tmp_path / "brown-jacket.jpg", (40, 32, 20), size=(300, 400))))
        expect(page.locator("#label")).to_have_text("red")
        expect(page.locator("#confidence")).to_have_text("63%")
        sizes = page.evaluate("""() => ({
            scroll: document.documentElement.scrollWidth,
            inner: window.innerWidth,
            boxes: [...document.querySelectorAll('select, .button, #result, .bar')].map(
                (el) => { const r = el.getBoundingClientRect(); return [r.left, r.right, r.height]; }),
        })""")
        assert sizes["inner"] == 390
        assert sizes["scroll"] <= sizes["inner"], "the page scrolls sideways on a phone"
        for left, right, _height in sizes["boxes"]:
            assert left >= 0 and right <= 390
        button_heights = [h for _, _, h in sizes["boxes"][1:3]]
        assert min(button_heights) >= 44, "touch targets should be at least 44 px tall"
        shot = Path(os.environ.get("TAGTELLER_SERVE_SCREENSHOT", tmp_path / "serve-phone.png"))
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
    finally:
        context.close()
