"""The scanner page in real headless Chromium: choose a domain, upload (pick, drop or paste) a
photo, see it pending and cancel it, read the result, the deal check (the price typed before or
after the photo, as typed: "12,50" is refused, never read as 1250), set a typical price, and send
a correction to the feedback inbox.

Drives Debian's ``chromium`` (``/usr/bin/chromium``, or ``$TAGTELLER_CHROMIUM``) with Playwright's
Python package; Playwright's own browser download is never used. ``scripts/install-browser-deps.sh``
installs both; without them these tests skip and say why. The server is a real uvicorn on a free
127.0.0.1 port, in a thread. ``$TAGTELLER_SERVE_SCREENSHOT`` names where the phone screenshot goes
(default: the test's temporary folder).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
import re
import threading
import time
import urllib.parse
from decimal import Decimal
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
from PIL import Image  # noqa: E402

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


@contextlib.contextmanager
def serving(app, thread_name: str):
    """``app`` served by a real uvicorn on a free 127.0.0.1 port, in a thread; yields its URL and
    stops it (checked) after the block."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name=thread_name, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert not thread.is_alive(), "uvicorn did not stop"


@pytest.fixture
def server_url(tmp_path, monkeypatch):
    """A real uvicorn serving the app on a free 127.0.0.1 port, in a thread."""
    register_serve_domains(tmp_path, monkeypatch)
    shades = colour_model(tmp_path / "shades.onnx", domain="shades", labels=("light", "dark"), color_mode="L")
    plugins.register_plugin(ShadesPlugin(shades), "serve-test-shades")
    app = create_app(engine=Engine(intra_threads=1), max_upload_bytes=256 * 1024)
    with serving(app, "uvicorn-test") as url:
        yield url


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
    # Phones' own formats can be picked; the page says what is accepted and how large.
    expect(page.locator("#choose")).to_have_attribute("accept", "image/*,.heic,.heif,.avif")
    expect(page.locator("#formats")).to_contain_text("JPEG, PNG")
    expect(page.locator("#formats")).to_contain_text("up to 256 KB")
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
    expect(page.locator("#deal-hint")).to_have_text("Set it below; it is saved in your price list.")
    expect(page.locator("#typical-title")).to_have_text(f"Set the typical price of {guess} (EUR)")
    expect(page.locator("#typical-low")).to_be_visible()  # open: no typical price is known yet

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
        expect(page.locator(".drop-hint")).to_be_hidden()  # no dropping on a phone: no hint
        page.click("#typical-title")  # "Change the typical price of red": the form fits too
        expect(page.locator("#typical-low")).to_have_value("60.00")
        sizes = page.evaluate("""() => ({
            scroll: document.documentElement.scrollWidth,
            inner: window.innerWidth,
            boxes: [...document.querySelectorAll('select, input:not([type=file]), .button, #result, .bar, #deal, summary')]
                .filter((el) => el.getClientRects().length > 0)
                .map((el) => { const r = el.getBoundingClientRect();
                               return [el.id || el.className, r.left, r.right, r.height]; }),
        })""")
        assert sizes["inner"] == 390
        assert sizes["scroll"] <= sizes["inner"], "the page scrolls sideways on a phone"
        for name, left, right, height in sizes["boxes"]:
            assert left >= 0 and right <= 390, name
            if name in ("button", "button primary", "domain", "price", "currency", "feedback-yes", "feedback-label",
                        "feedback-send", "typical-low", "typical-high", "typical-save", "typical-title"):
                assert height >= 44, f"touch target {name} is {height} px tall; at least 44 px"
        shot = Path(os.environ.get("TAGTELLER_SERVE_SCREENSHOT", tmp_path / "serve-phone.png"))
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        # The pending state (photo, spinner, Cancel) fits too.
        held: list = []
        page.route("**/v1/scan*", lambda route: held.append(route))
        page.set_input_files("#photo", str(solid_image(tmp_path / "next.jpg", (0, 0, 200), size=(300, 400))))
        expect(page.locator("#pending")).to_be_visible()
        box = page.locator("#pending").bounding_box()
        cancel = page.locator("#cancel").bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390
        assert cancel["x"] + cancel["width"] <= 390 and cancel["height"] >= 44
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.screenshot(path=str(shot.with_name(shot.stem + "-pending.png")))
        page.click("#cancel")
        page.unroute_all(behavior="ignoreErrors")
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


# -- first contact (issue 15) -------------------------------------------------------------------

def scan_requests(page) -> list:
    """Every request the page sends to the API, as it sends it."""
    sent: list = []
    page.on("request", lambda request: sent.append(request) if "/v1/" in request.url else None)
    return sent


@pytest.mark.parametrize("typed, reason", [
    ("12,50", "price '12,50': use '.' as the decimal point and no thousands separator"),
    ("1e3", "price '1e3': write it as plain digits with '.' as the decimal point"),
    ("1_000", "price '1_000': write the digits without '_'"),
    ("١٢", "price '١٢': write it with the digits 0-9"),
])
def test_price_is_sent_as_typed_and_a_bad_one_is_said_under_the_box(page, server_url, tmp_path, typed, reason):
    prices.set_price("colours", "red", "60", "90", currency="EUR")
    sent = scan_requests(page)
    open_scanner(page, server_url)
    page.select_option("#domain", "colours")
    page.fill("#price", typed)
    page.set_input_files("#photo", str(solid_image(tmp_path / "tag.png", (230, 10, 10))))
    expect(page.locator("#label")).to_have_text("red")  # the photo is told even when the price is bad
    price_error = page.locator("#price-error")
    expect(price_error).to_contain_text(f"Cannot check the deal: {reason}")
    expect(page.locator("#price")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#deal")).to_be_hidden()
    deal_urls = [r.url for r in sent if "/v1/deal" in r.url]
    assert deal_urls and all(urllib.parse.parse_qs(urllib.parse.urlsplit(u).query)["price"] == [typed]
                             for u in deal_urls), deal_urls
    assert not any("1250" in r.url or "1000" in r.url for r in sent)
    # Fixed in the box: checked again on the answer shown, without a new scan.
    page.fill("#price", "12.50")
    expect(page.locator("#deal-text")).to_have_text("typical 60-90 EUR, you pay 12.50: about 83% below")
    expect(price_error).to_be_hidden()
    assert sum("/v1/scan" in r.url for r in sent) == 1


def test_price_after_the_photo_and_a_typical_price_set_on_the_page(page, server_url, tmp_path):
    sent = scan_requests(page)
    open_scanner(page, server_url)
    page.select_option("#domain", "colours")
    page.set_input_files("#photo", str(solid_image(tmp_path / "tag.png", (230, 10, 10))))
    expect(page.locator("#label")).to_have_text("red")
    expect(page.locator("#deal")).to_be_hidden()  # no price yet
    page.fill("#price", "12.50")
    expect(page.locator("#deal-text")).to_have_text("no typical price for red")
    # Set it here, as `tagteller prices set` would: the deal is checked again straight away.
    page.fill("#typical-low", "60")
    page.fill("#typical-high", "90")
    page.click("#typical-save")
    expect(page.locator("#typical-status")).to_have_text("Red: typical 60-90 EUR, saved in your price list.")
    expect(page.locator("#deal-text")).to_have_text("typical 60-90 EUR, you pay 12.50: about 83% below")
    expect(page.locator("#deal")).to_have_attribute("data-position", "below")
    stored = prices.PriceBook("colours").lookup("red")
    assert (stored.low, stored.high, stored.currency, stored.source) == (Decimal(60), Decimal(90), "EUR",
                                                                         "your price list")
    # Another price, then a currency the list does not have: each re-checks the answer shown.
    page.fill("#price", "95")
    expect(page.locator("#deal-text")).to_have_text("typical 60-90 EUR, you pay 95: about 27% above")
    page.fill("#currency", "usd")
    page.locator("#currency").dispatch_event("change")
    expect(page.locator("#deal-text")).to_have_text("no typical price for red in USD")
    assert page.console_errors == []
    # A bad typical price is refused with the reason and nothing is saved.
    page.fill("#typical-low", "1,5")
    page.fill("#typical-high", "3")
    page.click("#typical-save")
    expect(page.locator("#typical-status")).to_contain_text("Could not save: low '1,5': use '.' as the decimal point")
    assert prices.PriceBook("colours").lookup("red", "USD") is None
    page.fill("#price", "")
    expect(page.locator("#deal")).to_be_hidden()
    assert sum("/v1/scan" in r.url for r in sent) == 1  # one photo, one scan


def test_pending_state_clears_the_old_answer_and_cancel_aborts(page, server_url, tmp_path):
    prices.set_price("colours", "red", "60", "90", currency="EUR")
    open_scanner(page, server_url)
    page.select_option("#domain", "colours")
    page.fill("#price", "12.50")
    page.set_input_files("#photo", str(solid_image(tmp_path / "red.png", (230, 10, 10))))
    expect(page.locator("#deal-text")).to_have_text("typical 60-90 EUR, you pay 12.50: about 83% below")
    expect(page.locator("#feedback-yes")).to_be_visible()

    held: list = []
    page.route("**/v1/scan*", lambda route: held.append(route))  # answered when the test says so
    failed: list = []
    page.on("requestfailed", lambda request: failed.append(request.url) if "/v1/scan" in request.url else None)
    page.set_input_files("#photo", str(solid_image(tmp_path / "blue.png", (0, 0, 255))))
    pending = page.locator("#pending")
    expect(pending).to_be_visible()
    expect(page.locator("#pending-text")).to_have_text("Scanning blue.png…")
    expect(page.locator("#pending .spinner")).to_be_visible()
    expect(page.locator("#pending-preview")).to_have_attribute("src", re.compile(r"^blob:"))
    expect(page.locator("#cancel")).to_be_visible()
    # The previous answer, its deal and its feedback buttons are gone while the new photo is scanned.
    expect(page.locator("#result")).to_be_hidden()
    expect(page.locator("#deal")).to_be_hidden()
    expect(page.locator("#feedback-yes")).to_be_hidden()
    expect(page.locator("#label")).to_have_text("")
    assert len(held) == 1
    held[0].continue_()
    expect(page.locator("#label")).to_have_text("blue")
    expect(pending).to_be_hidden()

    # Cancel: the request is aborted, nothing old comes back, the page says so.
    page.set_input_files("#photo", str(solid_image(tmp_path / "green.png", (0, 200, 0))))
    expect(pending).to_be_visible()
    expect(page.locator("#result")).to_be_hidden()
    page.click("#cancel")
    expect(pending).to_be_hidden()
    expect(page.locator("#status")).to_have_text("Scan cancelled.")
    expect(page.locator("#result")).to_be_hidden()
    expect(page.locator("#error")).to_be_hidden()
    page.wait_for_timeout(100)  # the failure event follows the abort
    assert len(failed) == 1 and "domain=colours" in failed[0]
    # Escape cancels too.
    page.set_input_files("#photo", str(solid_image(tmp_path / "green2.png", (0, 190, 0))))
    expect(pending).to_be_visible()
    page.keyboard.press("Escape")
    expect(pending).to_be_hidden()
    expect(page.locator("#status")).to_have_text("Scan cancelled.")
    page.unroute_all(behavior="ignoreErrors")
    # The next photo scans as usual.
    page.set_input_files("#choose", str(solid_image(tmp_path / "red2.png", (220, 0, 0))))
    expect(page.locator("#label")).to_have_text("red")


DROP_JS = """async ([name, type, b64, kind]) => {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const data = new DataTransfer();
    data.items.add(new File([bytes], name, { type }));
    if (kind === "paste") {
        document.dispatchEvent(new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true }));
        return true;
    }
    const zone = document.getElementById("drop-zone");
    const over = new DragEvent("dragover", { dataTransfer: data, bubbles: true, cancelable: true });
    zone.dispatchEvent(over);
    const highlighted = zone.classList.contains("dragging");
    zone.dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
    return over.defaultPrevented && highlighted;
}"""


def drop(page, name: str, data: bytes, type_: str, kind: str = "drop"):
    return page.evaluate(DROP_JS, [name, type_, base64.b64encode(data).decode(), kind])


@pytest.fixture
def received(monkeypatch):
    """The uploads the server reads, as (file name, bytes): what the browser really sent."""
    from tagteller.serve import app as app_module

    uploads: list[tuple[str, bytes]] = []
    read = app_module.read_upload

    async def recording(request, max_bytes):
        upload = await read(request, max_bytes)
        uploads.append((upload.name, upload.data))
        return upload

    monkeypatch.setattr(app_module, "read_upload", recording)
    return uploads


def test_drop_and_paste_a_photo(page, server_url, tmp_path, received):
    open_scanner(page, server_url)
    page.select_option("#domain", "colours")
    expect(page.locator(".drop-hint")).to_be_visible()
    blue = solid_image(tmp_path / "blue.png", (0, 0, 255)).read_bytes()
    assert drop(page, "dropped.png", blue, "image/png") is True  # the drop zone takes it (and shows it)
    expect(page.locator("#label")).to_have_text("blue")
    assert received == [("dropped.png", blue)]  # small: sent exactly as it is
    green = solid_image(tmp_path / "green.png", (0, 200, 0)).read_bytes()
    drop(page, "image.png", green, "image/png", kind="paste")
    expect(page.locator("#label")).to_have_text("green")
    # Pasting text into the price box stays text.
    page.locator("#price").focus()
    page.keyboard.insert_text("7.50")
    expect(page.locator("#price")).to_have_value("7.50")
    assert page.console_errors == []


def test_large_photo_is_shrunk_upright_before_upload(page, server_url, tmp_path, received):
    # Stored sideways (2400x1200, red left, blue right) with EXIF orientation 6: upright it is
    # 1200x2400 with red on top.
    stored = Image.new("RGB", (2400, 1200), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 1200, 1200))
    exif = Image.Exif()
    exif[0x0112] = 6
    photo = tmp_path / "IMG_0042.jpg"
    stored.save(photo, format="JPEG", quality=95, exif=exif)
    open_scanner(page, server_url)
    page.select_option("#domain", "colours")
    page.set_input_files("#choose", str(photo))
    expect(page.locator("#label")).not_to_have_text("")
    [(name, data)] = received
    assert name == "IMG_0042.jpg"
    assert len(data) < photo.stat().st_size
    with Image.open(io.BytesIO(data)) as sent_image:
        assert sent_image.format == "JPEG"
        assert sent_image.size == (512, 1024)  # longest side 1024, upright
        top, bottom = sent_image.convert("RGB").getpixel((256, 100)), sent_image.convert("RGB").getpixel((256, 900))
    assert top[0] > 200 and top[2] < 60, top  # red on top
    assert bottom[2] > 200 and bottom[0] < 60, bottom


def test_a_photo_the_browser_cannot_draw_is_sent_as_it_is(page, server_url, received):
    """HEIC in Chromium: no canvas, so the file goes unchanged and the server decodes (or names) it."""
    open_scanner(page, server_url)
    page.select_option("#domain", "colours")
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(range(256)) * 4
    drop(page, "IMG_0001.HEIC", heic, "image/heic")
    # The bytes are not a real photo: the server's reason is shown (a real HEIC is told, see imaging).
    expect(page.locator("#error")).to_contain_text("Could not scan IMG_0001.HEIC: ")
    assert received == [("IMG_0001.HEIC", heic)]


@pytest.mark.parametrize("path, rendered", [("docs", ".swagger-ui .info .title"), ("redoc", "h1")])
def test_api_docs_render_offline(page, server_url, path, rendered):
    """Swagger UI and ReDoc come from the server itself: with every other host cut off, they render,
    and nothing they need (script, style, font, data) is asked of another host. ReDoc's bundle may
    ask cdn.redoc.ly for its decorative "docs by Redocly" logo, an image it hides when it fails:
    images are the one kind of outside request allowed, and only for ReDoc."""
    outside: list[tuple[str, str]] = []

    def only_this_server(route):
        if route.request.url.startswith(server_url):
            route.continue_()
        else:
            outside.append((route.request.resource_type, route.request.url))
            route.abort()

    page.route("**/*", only_this_server)
    page.goto(server_url + path)
    expect(page.locator(rendered).first).to_contain_text("tagteller")
    allowed = {"image"} if path == "redoc" else set()
    assert [(kind, url) for kind, url in outside if kind not in allowed] == []
    page.unroute_all(behavior="ignoreErrors")
