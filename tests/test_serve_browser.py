"""The scanner page in real headless Chromium: choose a domain, upload a photo, read the result,
the deal check, and send a correction to the feedback inbox.

Drives Debian's ``chromium`` (``/usr/bin/chromium``, or ``$TAGTELLER_CHROMIUM``) with Playwright's
Python package; Playwright's own browser download is never used. ``scripts/install-browser-deps.sh``
installs both; without them these tests skip and say why. The server is a real uvicorn on a free
127.0.0.1 port, in a thread. ``$TAGTELLER_SERVE_SCREENSHOT`` names where the phone screenshot goes
(default: the test's temporary folder).
"""

from __future__ import annotations

import hashlib
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
from tagteller import Domain, paths, plugins, prices  # noqa: E402
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
            if r.status >= 400 and "/v1/scan" not in r.url and "/v1/feedback" not in r.url else None)
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
    # No price list: the deal says so and tells how to add one.
    guess = page.locator("#label").text_content()
    expect(page.locator("#deal-text")).to_have_text(f"no typical price for {guess}")
    expect(page.locator("#deal-hint")).to_have_text(
        f"Add a typical price with: tagteller prices set --domain colours {guess} LOW HIGH")

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
    prices.set_price("colours", "red", "60", "90", currency="EUR")
    context = browser.new_context(**PHONE)
    try:
        page = context.new_page()
        page.set_default_timeout(10_000)
        open_scanner(page, server_url)
        page.select_option("#domain", "colours")
        page.fill("#price", "12.50")
        page.fill("#currency", "eur")
        # A muted brown: red wins, but not by everything, so the bars differ in length.
        page.set_input_files("#photo", str(solid_image(tmp_path / "brown-jacket.jpg", (40, 32, 20), size=(300, 400))))
        expect(page.locator("#label")).to_have_text("red")
        expect(page.locator("#confidence")).to_have_text("63%")
        expect(page.locator("#deal-text")).to_have_text("typical 60-90 EUR, you pay 12.50: about 83% below")
        expect(page.locator("#feedback-yes")).to_be_visible()
        sizes = page.evaluate("""() => ({
            scroll: document.documentElement.scrollWidth,
            inner: window.innerWidth,
            boxes: [...document.querySelectorAll('select, input:not([type=file]), .button, #result, .bar, #deal')]
                .filter((el) => el.getClientRects().length > 0)
                .map((el) => { const r = el.getBoundingClientRect();
                               return [el.id || el.className, r.left, r.right, r.height]; }),
        })""")
        assert sizes["inner"] == 390
        assert sizes["scroll"] <= sizes["inner"], "the page scrolls sideways on a phone"
        for name, left, right, height in sizes["boxes"]:
            assert left >= 0 and right <= 390, name
            if name in ("button", "button primary", "domain", "price", "currency", "feedback-yes", "feedback-label",
                        "feedback-send"):
                assert height >= 44, f"touch target {name} is {height} px tall; at least 44 px"
        shot = Path(os.environ.get("TAGTELLER_SERVE_SCREENSHOT", tmp_path / "serve-phone.png"))
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
    finally:
        context.close()


def test_deal_check_and_correction_from_the_page(page, server_url, tmp_path):
    prices.set_price("colours", "red", "60", "90", currency="EUR", note="three shops")
    open_scanner(page, server_url)
    page.select_option("#domain", "colours")
    page.fill("#price", "12.50")
    photo = solid_image(tmp_path / "tag.png", (230, 10, 10))
    page.set_input_files("#photo", str(photo))
    expect(page.locator("#label")).to_have_text("red")
    expect(page.locator("#deal-text")).to_have_text("typical 60-90 EUR, you pay 12.50: about 83% below")
    expect(page.locator("#deal")).to_have_attribute("data-position", "below")
    expect(page.locator("#deal-hint")).to_have_text("Typical price from your price list.")

    # "No, it is ...": the other labels, not the predicted one; this domain takes no new labels.
    choices = page.locator("#feedback-label option:not([disabled])")
    expect(choices).to_have_text(["green", "blue"])
    status = page.locator("#feedback-status")
    page.click("#feedback-send")
    expect(status).to_have_text("Choose the right label first.")
    page.select_option("#feedback-label", "green")
    page.click("#feedback-send")
    expect(status).to_have_text("Filed as 'green' in the colours feedback inbox. Thank you!")
    digest = hashlib.sha256(photo.read_bytes()).hexdigest()
    inbox = paths.feedback_dir("colours")
    assert sorted(p.relative_to(inbox).as_posix() for p in inbox.rglob("*.*")) == [f"green/{digest}.png"]
    # "Yes, keep it" files the same bytes under the predicted label: the latest answer wins.
    page.click("#feedback-yes")
    expect(status).to_have_text("Moved from 'green' to 'red' in the colours feedback inbox. Thank you!")
    assert sorted(p.relative_to(inbox).as_posix() for p in inbox.rglob("*.*")) == [f"red/{digest}.png"]
    assert page.console_errors == []

    # A domain that takes new labels offers one; the server's refusal is shown as text.
    page.select_option("#domain", "palette")
    page.fill("#price", "")
    page.set_input_files("#choose", str(solid_image(tmp_path / "sea.png", (0, 60, 250))))
    expect(page.locator("#label")).to_have_text("blue")
    expect(page.locator("#deal")).to_be_hidden()
    page.select_option("#feedback-label", "*new*")
    new_label = page.locator("#feedback-new-label")
    expect(new_label).to_be_visible()
    new_label.fill("Blue")
    page.click("#feedback-send")
    expect(status).to_contain_text("Could not send Blue: new label 'Blue' differs from the existing label 'blue'")
    new_label.fill("navy")
    page.click("#feedback-send")
    expect(status).to_have_text("Filed as 'navy' in the palette feedback inbox. Thank you!")
    assert len(list((paths.feedback_dir("palette") / "navy").glob("*.png"))) == 1
