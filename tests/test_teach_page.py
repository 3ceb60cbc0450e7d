"""The scanner page's "Teach it" offer (issue #20) in real headless Chromium: corrections to a new
label are filed, the page says how many more photos it needs, then offers to teach it, and the
next scan answers with it. Skips as ``tests/test_serve_browser.py`` does without Chromium and
Playwright (its ``browser`` fixture is reused)."""

from __future__ import annotations

import pytest

from tests.test_serve_browser import browser, expect, serving  # noqa: F401 - the fixture is used by name

from tagteller import plugins  # noqa: E402
from tagteller.domain import Domain  # noqa: E402
from tagteller.engine import Engine  # noqa: E402
from tagteller.serve.app import create_app  # noqa: E402
from tests.builders import DomainsPlugin  # noqa: E402
from tests.test_teach import LABELS, paint_model, photos  # noqa: E402


@pytest.fixture
def paint_server(tmp_path):
    model = paint_model(tmp_path / "paints.onnx")
    plugins.register_plugin(DomainsPlugin(Domain(name="paints", description="Paint colours.", labels=LABELS,
                                                 model_path=model, allow_new_labels=True)), name="paint-page")
    app = create_app(engine=Engine(intra_threads=1), max_upload_bytes=256 * 1024)
    with serving(app, "uvicorn-teach-test") as url:
        yield url


def test_corrections_to_a_new_label_lead_to_teach_it(browser, paint_server, tmp_path):  # noqa: F811
    context = browser.new_context()
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(paint_server)
    expect(page.locator("#domain option[value='paints']")).to_be_attached()
    page.select_option("#domain", "paints")
    status, hint, teach = page.locator("#feedback-status"), page.locator("#feedback-teach-hint"), page.locator("#feedback-teach")
    purple = photos(tmp_path / "purple", (150, 20, 160), 5, 2, "purple")
    for i, photo in enumerate(purple):
        page.set_input_files("#choose", str(photo))
        expect(page.locator("#label")).to_have_text("Unknown")  # the gate never saw purple
        expect(status).to_have_text("")  # this photo's result is shown (a new result clears the status)
        page.select_option("#feedback-label", "*new*" if i == 0 else "purple")
        if i == 0:
            page.locator("#feedback-new-label").fill("purple")
        page.click("#feedback-send")
        expect(status).to_contain_text("Filed as 'purple'")
        if i < 4:
            expect(hint).to_have_text(f"{4 - i} more photo(s) of purple and it can be taught.")
            expect(teach).to_be_hidden()
    expect(hint).to_be_hidden()
    expect(teach).to_have_text("Teach it: add purple from 5 photos")
    teach.click()
    expect(status).to_have_text("Taught 'purple' from 5 photos: scans now answer purple.")
    expect(teach).to_be_hidden()
    page.set_input_files("#choose", str(photos(tmp_path / "more", (145, 25, 165), 1, 9, "more")[0]))
    expect(page.locator("#label")).to_have_text("purple")
    assert errors == []
    context.close()
