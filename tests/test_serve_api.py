"""`tagteller serve`'s HTTP API through FastAPI's test client: scans, limits and every error.

The app scans with tiny colour models (``tests.builders.colour_model``) registered under test
domains by a plugin object; built-in plugins are switched off so the domain list is exactly ours.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="needs the [serve] extra (fastapi)")
pytest.importorskip("python_multipart", reason="needs the [serve] extra (python-multipart)")

import httpx  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from PIL import Image  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import tagteller  # noqa: E402
from tagteller import Domain, feedback, paths, plugins, prices  # noqa: E402
from tagteller.cli import build_app  # noqa: E402
from tagteller.engine import Engine, default_engine  # noqa: E402
from tagteller.serve.app import create_app  # noqa: E402
from tests.builders import RGB_LABELS, DomainsPlugin, colour_model  # noqa: E402

MAX_UPLOAD = 64 * 1024
TAGTELLER = Path(sys.executable).parent / "tagteller"




def register_serve_domains(folder: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Only test domains: ``colours`` (a working model), ``palette`` (a working model; its feedback
    inbox accepts new labels), ``no-model``, ``broken-model`` (not ONNX) and ``wrong-model`` (a
    model trained for another domain)."""
    monkeypatch.setenv("TAGTELLER_PLUGINS", "")  # no built-in plugins: the domain list is ours alone
    model = colour_model(folder / "colours.onnx", model_version="7")
    palette = colour_model(folder / "palette.onnx", domain="palette", model_version="2")
    broken = folder / "broken.onnx"
    broken.write_bytes(b"this is not an ONNX model")
    plugins.register_plugin(DomainsPlugin(
        Domain(name="colours", description="Red, green or blue, by mean colour.", labels=RGB_LABELS,
               model_path=model),
        Domain(name="palette", description="Colours; you may add your own.", labels=RGB_LABELS,
               model_path=palette, allow_new_labels=True),
        Domain(name="no-model", description="Nothing trained yet.", labels=("a", "b")),
        Domain(name="broken-model", description="A corrupt model file.", labels=RGB_LABELS, model_path=broken),
        Domain(name="wrong-model", description="Someone else's model.", labels=RGB_LABELS, model_path=model),
    ), "serve-test-domains")
    return {"colours": model, "palette": palette, "broken": broken}


def png_bytes(colour=(255, 0, 0), size=(40, 30), pad_to: int | None = None) -> bytes:
    """A PNG; ``pad_to`` appends zero bytes after IEND (still decodable) up to that length."""
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    data = buf.getvalue()
    if pad_to is not None:
        assert pad_to >= len(data)
        data += b"\0" * (pad_to - len(data))
    return data


def jpeg_bytes(colour=(0, 0, 255), size=(64, 64), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, colour).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` but carries almost no pixel data."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


@pytest.fixture
def domains(tmp_path, monkeypatch):
    return register_serve_domains(tmp_path, monkeypatch)


@pytest.fixture
def client(domains):
    app = create_app(engine=Engine(intra_threads=1), max_upload_bytes=MAX_UPLOAD)
    with TestClient(app) as test_client:
        yield test_client


def scan(client: TestClient, domain: str = "colours", **kwargs) -> httpx.Response:
    params = {"domain": domain, **kwargs.pop("params", {})}
    return client.post("/v1/scan", params=params, **kwargs)


def assert_error(response: httpx.Response, code: int, *fragments: str) -> dict:
    assert response.status_code == code, response.text
    body = response.json()
    assert body["status"] == "error"
    assert body["code"] == code
    assert isinstance(body["error"], str) and body["error"]
    assert "\n" not in body["error"]
    for fragment in fragments:
        assert fragment in body["error"], body["error"]
    return body


# -- happy paths ------------------------------------------------------------------------------

def test_healthz_answers_without_loading_a_model(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": tagteller.__version__}
    assert client.app.state.service.engine._models == {}


def test_domains_lists_labels_models_and_versions(client):
    response = client.get("/v1/domains")
    assert response.status_code == 200
    body = response.json()
    by_name = {row["name"]: row for row in body["domains"]}
    assert set(by_name) == {"colours", "palette", "no-model", "broken-model", "wrong-model"}
    colours = by_name["colours"]
    assert colours["has_model"] is True
    assert colours["model_version"] == "7"
    assert colours["labels"] == list(RGB_LABELS)
    assert colours["description"] == "Red, green or blue, by mean colour."
    assert colours["model"] == "shipped"
    assert colours["model_error"] is None
    assert colours["allow_new_labels"] is False
    assert colours["feedback_labels"] == list(RGB_LABELS)
    assert by_name["palette"]["allow_new_labels"] is True
    assert by_name["no-model"]["has_model"] is False
    assert by_name["no-model"]["model"] == "none"
    assert by_name["no-model"]["model_version"] is None
    assert by_name["broken-model"]["has_model"] is False
    assert "not a loadable ONNX model" in by_name["broken-model"]["model_error"]
    assert "trained for domain 'colours'" in by_name["wrong-model"]["model_error"]
    assert body["limits"]["max_upload_bytes"] == MAX_UPLOAD


@pytest.mark.parametrize("colour, label", [((255, 0, 0), "red"), ((0, 200, 0), "green"), ((0, 0, 250), "blue")])
def test_multipart_scan_answers_the_record(client, colour, label):
    response = scan(client, files={"file": ("shirt photo.png", png_bytes(colour), "image/png")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ok"
    assert body["label"] == label
    assert body["sure"] is True
    assert body["confidence"] > 0.99
    assert body["file"] == "shirt photo.png"
    assert body["domain"] == "colours"
    assert body["model_version"] == "7"
    assert body["error"] is None
    assert [p["label"] for p in body["top"]][0] == label
    assert len(body["top"]) == 3
    assert body["top_k"] == 3
    assert body["price"] is None
    timing = body["timing_ms"]
    assert timing["decode_and_inference"] > 0
    assert timing["waiting"] >= 0
    assert timing["total"] >= timing["decode_and_inference"]


@pytest.mark.parametrize("content_type, data, label", [
    ("image/png", png_bytes((0, 255, 0)), "green"),
    ("image/jpeg", jpeg_bytes((0, 0, 255)), "blue"),
    ("application/octet-stream", png_bytes((255, 0, 0)), "red"),
    ("IMAGE/PNG; charset=binary", png_bytes((255, 0, 0)), "red"),
])
def test_raw_body_scan(client, content_type, data, label):
    response = scan(client, content=data, headers={"content-type": content_type})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["label"] == label
    assert body["file"] == f"<{len(data)} bytes>"


def test_top_k_limits_the_predictions(client):
    body = scan(client, params={"top_k": 1}, content=png_bytes(), headers={"content-type": "image/png"}).json()
    assert [p["label"] for p in body["top"]] == ["red"]
    body = scan(client, params={"top_k": 50}, content=png_bytes(), headers={"content-type": "image/png"}).json()
    assert len(body["top"]) == 3  # never more than the model's labels
    assert body["top_k"] == 50


def test_grey_image_is_reported_as_not_sure(client):
    body = scan(client, content=png_bytes((128, 128, 128)), headers={"content-type": "image/png"}).json()
    assert body["status"] == "ok"
    assert body["sure"] is False
    assert body["confidence"] == pytest.approx(1 / 3, abs=1e-3)


def test_price_is_passed_through_from_query_or_form(client):
    body = scan(client, params={"price": "12.50"}, content=png_bytes(), headers={"content-type": "image/png"}).json()
    assert body["price"] == 12.5
    body = scan(client, files={"file": ("a.png", png_bytes(), "image/png")}, data={"price": "7"}).json()
    assert body["price"] == 7.0
    body = scan(client, files={"file": ("a.png", png_bytes(), "image/png")}, data={"price": ""}).json()
    assert body["price"] is None


def test_client_file_names_are_reduced_to_a_printable_base_name(client):
    # Written by hand: httpx would percent-encode the control character in the file name.
    form = (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"..\\..\\etc/pa\x07sswd.png\"\r\n"
            b"Content-Type: image/png\r\n\r\n" + png_bytes() + b"\r\n--b--\r\n")
    body = scan(client, content=form, headers={"content-type": "multipart/form-data; boundary=b"}).json()
    assert body["status"] == "ok", body
    assert body["file"] == "passwd.png"


# -- the page ---------------------------------------------------------------------------------

def test_page_is_served_with_its_assets_and_nothing_external(client):
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    html = page.text
    assert 'accept="image/*"' in html and 'capture="environment"' in html
    assert 'id="domain"' in html
    assert 'name="viewport"' in html
    for asset, kind in (("/static/app.js", "javascript"), ("/static/style.css", "text/css")):
        response = client.get(asset)
        assert response.status_code == 200
        assert kind in response.headers["content-type"]
        for text in (html, response.text):
            assert "http://" not in text and "https://" not in text and "//cdn" not in text


def test_openapi_describes_the_api_offline(client):
    spec = client.get("/openapi.json").json()
    assert {"/v1/scan", "/v1/feedback", "/v1/domains", "/healthz"} <= set(spec["paths"])
    body = spec["paths"]["/v1/scan"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "image/*", "application/octet-stream"} <= set(body)
    assert client.get("/docs").status_code == 200


# -- errors -----------------------------------------------------------------------------------

def test_unknown_domain_is_404_and_names_the_known_ones(client):
    body = assert_error(scan(client, domain="shoes", content=png_bytes(), headers={"content-type": "image/png"}),
                        404, "unknown domain 'shoes'", "colours")
    assert "no-model" in body["error"]
    assert_error(scan(client, domain="../../etc", content=png_bytes(), headers={"content-type": "image/png"}), 404)


@pytest.mark.parametrize("domain, fragment", [
    ("no-model", "has no model installed"),
    ("broken-model", "not a loadable ONNX model"),
    ("wrong-model", "trained for domain 'colours'"),
])
def test_domain_without_a_usable_model_is_503(client, domain, fragment):
    assert_error(scan(client, domain=domain, content=png_bytes(), headers={"content-type": "image/png"}), 503,
                 f"{domain!r}", fragment)


@pytest.mark.parametrize("params, fragment", [
    ({"domain": None}, "query parameter 'domain'"),
    ({"top_k": 0}, "query parameter 'top_k'"),
    ({"top_k": 51}, "query parameter 'top_k'"),
    ({"top_k": "three"}, "query parameter 'top_k'"),
    ({"price": "cheap"}, "price 'cheap' is not a number"),
    ({"price": "-1"}, "price must be more than 0"),
    ({"price": "0"}, "price must be more than 0"),
    ({"price": "nan"}, "finite"),
    ({"price": "inf"}, "finite"),
    ({"price": "12,50"}, "use '.' as the decimal point"),
    ({"price": "1" * 33}, "query parameter 'price'"),
    ({"price": "5", "currency": "EURO"}, "not a three-letter ISO 4217 code"),
    ({"price": "5", "currency": "€"}, "not a three-letter ISO 4217 code"),
    ({"currency": "EUR"}, "currency goes with price"),
    ({"domain": "x" * 65}, "query parameter 'domain'"),
])
def test_bad_parameters_are_400(client, params, fragment):
    query = {"domain": "colours", **params}
    query = {k: v for k, v in query.items() if v is not None}
    response = client.post("/v1/scan", params=query, content=png_bytes(), headers={"content-type": "image/png"})
    assert_error(response, 400, fragment)


def test_price_or_currency_given_twice_is_400(client):
    response = scan(client, params={"price": "3"}, files={"file": ("a.png", png_bytes(), "image/png")},
                    data={"price": "4"})
    assert_error(response, 400, "give the price once")
    response = scan(client, params={"currency": "EUR"}, files={"file": ("a.png", png_bytes(), "image/png")},
                    data={"price": "4", "currency": "USD"})
    assert_error(response, 400, "give the currency once")
    response = scan(client, files={"file": ("a.png", png_bytes(), "image/png")}, data={"price": "4" * 40})
    assert_error(response, 400, "price is too long")


@pytest.mark.parametrize("content_type", ["text/plain", "application/json", "application/x-www-form-urlencoded",
                                          "video/mp4", None])
def test_wrong_content_type_is_400(client, content_type):
    headers = {"content-type": content_type} if content_type else {}
    response = scan(client, content=png_bytes(), headers=headers)
    assert_error(response, 400, "is not accepted", "multipart/form-data")


@pytest.mark.parametrize("data, fragment", [
    (b"", "empty upload"),
    (b"hello, I am not a picture", "not a recognised image format"),
    (png_bytes()[:60], "cannot"),
    (jpeg_bytes()[:400], "cannot"),
    (png_declaring(60_000, 60_000), "refused"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "not a recognised image format"),
])
def test_undecodable_image_is_400_with_the_reason(client, data, fragment):
    response = scan(client, content=data, headers={"content-type": "image/png"})
    body = assert_error(response, 400, fragment)
    if data:  # a decode failure answers the full scan record
        assert body["domain"] == "colours" and body["label"] is None and body["top"] == []


def test_multipart_problems_are_400(client):
    png = png_bytes()
    assert_error(scan(client, data={"other": "x"}, files={"photo": ("a.png", png, "image/png")}), 400,
                 "no 'file' field")
    assert_error(scan(client, data={"file": "not a file"}, files={"x": ("a.png", png, "image/png")}), 400,
                 "must be a file part")
    assert_error(scan(client, files={"file": ("notes.txt", b"plain words", "text/plain")}), 400,
                 "content type text/plain")
    assert_error(scan(client, files=[("file", ("a.png", png, "image/png")), ("file", ("b.png", png, "image/png"))]),
                 400, "malformed multipart upload")
    assert_error(scan(client, content=b"--xyz\r\nnonsense", headers={"content-type": "multipart/form-data"}), 400,
                 "malformed multipart upload")
    assert_error(scan(client, content=b"--xyz\r\nnonsense",
                      headers={"content-type": "multipart/form-data; boundary=xyz"}), 400)


def test_upload_at_the_limit_is_scanned_and_one_byte_more_is_413(client):
    at_limit = png_bytes(pad_to=MAX_UPLOAD)
    over = png_bytes(pad_to=MAX_UPLOAD + 1)
    assert scan(client, content=at_limit, headers={"content-type": "image/png"}).json()["label"] == "red"
    assert_error(scan(client, content=over, headers={"content-type": "image/png"}), 413, "64 KiB limit")
    assert scan(client, files={"file": ("a.png", at_limit, "image/png")}).json()["label"] == "red"
    assert_error(scan(client, files={"file": ("a.png", over, "image/png")}), 413)


def test_declared_content_length_over_the_limit_is_413_before_reading(client):
    response = scan(client, content=png_bytes(), headers={"content-type": "image/png",
                                                          "content-length": str(10 * MAX_UPLOAD)})
    assert_error(response, 413)
    assert_error(scan(client, content=png_bytes(), headers={"content-type": "image/png", "content-length": "lots"}),
                 400, "Content-Length")


def test_streamed_upload_without_length_is_counted(client):
    def chunks(total: int, size: int = 8192):
        sent = 0
        while sent < total:
            yield b"\0" * min(size, total - sent)
            sent += size

    def streamed(data: bytes):
        yield from (data[i:i + 1000] for i in range(0, len(data), 1000))

    big = scan(client, content=chunks(4 * MAX_UPLOAD), headers={"content-type": "application/octet-stream"})
    assert "content-length" not in big.request.headers
    assert_error(big, 413)
    multipart_head = b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\n"
    big_form = scan(client, content=(part for part in [multipart_head, *chunks(4 * MAX_UPLOAD)]),
                    headers={"content-type": "multipart/form-data; boundary=b"})
    assert_error(big_form, 413)
    ok = scan(client, content=streamed(png_bytes((0, 0, 255))), headers={"content-type": "image/png"})
    assert ok.status_code == 200 and ok.json()["label"] == "blue"


GARBAGE = [
    pytest.param(b"\x00" * 100, "image/jpeg", id="zeros"),
    pytest.param(b"\xff\xd8\xff" + bytes(range(256)) * 2, "image/jpeg", id="jpeg-magic-then-noise"),
    pytest.param(b"GIF89a" + b"\x00" * 20, "image/gif", id="gif-header-only"),
    pytest.param(b"BM" + b"\xff" * 60, "image/bmp", id="bmp-bad-header"),
    pytest.param(b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp", id="webp-stub"),
    pytest.param(b"II*\x00" + b"\x00" * 40, "image/tiff", id="tiff-stub"),
    pytest.param(png_bytes()[:33], "image/png", id="png-header-only"),
    pytest.param(png_bytes().replace(b"IDAT", b"IDAX"), "image/png", id="png-no-pixel-data"),
    pytest.param("ünïcödé text".encode(), "application/octet-stream", id="utf8-text"),
    pytest.param(b"{\"file\": \"x\"}", "application/json", id="json"),
    pytest.param(b"%PDF-1.4\n", "application/pdf", id="pdf"),
    pytest.param(b"--b\r\n\r\n--b--", "multipart/form-data; boundary=b", id="multipart-empty-part"),
    pytest.param(b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--\r\n",
                 "multipart/form-data; boundary=b", id="multipart-part-without-name"),
    pytest.param(b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\n\r\nabc\r\n--b--\r\n",
                 "multipart/form-data; boundary=b", id="multipart-file-not-an-image"),
    pytest.param(b"garbage", "multipart/form-data; boundary=", id="multipart-empty-boundary"),
    pytest.param(b"garbage", "multipart/form-data; boundary=\"unterminated", id="multipart-bad-boundary"),
    pytest.param(b"garbage", "image/png; \x7f=\x01", id="odd-content-type-parameters"),
    pytest.param(b"garbage", ";;;", id="content-type-only-separators"),
]


@pytest.mark.parametrize("data, content_type", GARBAGE)
def test_garbage_is_refused_with_a_reason_never_500(client, data, content_type):
    response = scan(client, content=data, headers={"content-type": content_type})
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["status"] == "error"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=3000),
       content_type=st.sampled_from(["image/png", "image/jpeg", "application/octet-stream", "image/gif",
                                     "multipart/form-data; boundary=x", "text/plain"]),
       prefix=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"--x\r\n"]))
def test_random_bytes_never_cause_a_server_error(client, data, content_type, prefix):
    response = scan(client, content=prefix + data, headers={"content-type": content_type})
    assert response.status_code < 500, response.text
    assert response.json()["status"] in ("ok", "error")


@pytest.mark.parametrize("method, path", [("GET", "/v1/scan"), ("POST", "/v1/domains"), ("GET", "/nowhere")])
def test_wrong_routes_answer_the_error_shape(client, method, path):
    response = client.request(method, path)
    assert response.status_code in (404, 405)
    assert response.json()["status"] == "error"


# -- the deal check -----------------------------------------------------------------------------

DEAL_RESPONSE_FIELDS = ("price_paid", "typical_low", "typical_high", "currency", "deal", "price_source",
                        "typical_known", "deal_position")


class ExampleUsdPrices:
    """A plugin price source that knows one label, in USD (made-up example numbers)."""

    @tagteller.hookimpl
    def register_price_sources(self, register):
        def lookup(domain, label):
            if (domain, label) == ("colours", "blue"):
                return prices.PriceRange(low="10", high="20", currency="USD", note="example numbers")
            return None

        register("example-usd", lookup)


def raw_scan(client: TestClient, data: bytes, **params) -> httpx.Response:
    return scan(client, params=params, content=data, headers={"content-type": "image/png"})


def test_scan_without_a_price_has_null_deal_fields(client):
    body = raw_scan(client, png_bytes()).json()
    assert {name: body[name] for name in DEAL_RESPONSE_FIELDS} == dict.fromkeys(DEAL_RESPONSE_FIELDS)


def test_deal_check_against_the_users_price_list(client):
    prices.set_price("colours", "red", "60", "90", currency="EUR", note="three shops")
    response = raw_scan(client, png_bytes((255, 0, 0)), price="12.50")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["label"] == "red" and body["sure"] is True
    assert body["price"] == 12.5
    assert {name: body[name] for name in DEAL_RESPONSE_FIELDS} == {
        "price_paid": "12.50", "typical_low": "60.00", "typical_high": "90.00", "currency": "EUR",
        "deal": "typical 60-90 EUR, you pay 12.50: about 83% below", "price_source": "your price list",
        "typical_known": True, "deal_position": "below",
    }
    # From the form, with the currency (any case), and above the range.
    body = scan(client, files={"file": ("tag.png", png_bytes((255, 0, 0)), "image/png")},
                data={"price": "120", "currency": "eur"}).json()
    assert body["deal"] == "typical 60-90 EUR, you pay 120: about 60% above"
    assert body["price_paid"] == "120.00" and body["deal_position"] == "above"
    body = raw_scan(client, png_bytes((255, 0, 0)), price="90").json()
    assert body["deal"] == "typical 60-90 EUR, you pay 90: within the typical range"
    assert body["deal_position"] == "within"


def test_no_typical_price_is_said_in_a_field_not_an_error(client):
    prices.set_price("colours", "red", "60", "90", currency="EUR")
    response = raw_scan(client, png_bytes((0, 255, 0)), price="5")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["label"] == "green"
    assert body["typical_known"] is False
    assert body["deal"] == "no typical price for green"
    assert body["price_paid"] == "5"
    assert body["typical_low"] is None and body["typical_high"] is None and body["price_source"] is None
    # A range in another currency is not converted: red is known in EUR only.
    body = raw_scan(client, png_bytes((255, 0, 0)), price="5", currency="USD").json()
    assert body["typical_known"] is False
    assert body["deal"] == "no typical price for red in USD"
    assert body["currency"] == "USD"


def test_plugin_price_source_and_currency_choice(client):
    plugins.register_plugin(ExampleUsdPrices(), "example-usd-prices")
    body = raw_scan(client, png_bytes((0, 0, 255)), price="12").json()
    assert body["deal"] == "typical 10-20 USD, you pay 12: within the typical range"
    assert body["price_source"] == "example-usd"
    assert body["currency"] == "USD"
    # The user's own list wins over the plugin, unless only the plugin has the requested currency.
    prices.set_price("colours", "blue", "30", "50", currency="EUR")
    body = raw_scan(client, png_bytes((0, 0, 255)), price="12").json()
    assert (body["price_source"], body["currency"]) == ("your price list", "EUR")
    body = raw_scan(client, png_bytes((0, 0, 255)), price="12", currency="USD").json()
    assert (body["price_source"], body["currency"]) == ("example-usd", "USD")


def test_unsure_result_says_if_it_is_before_the_deal(client):
    for label in RGB_LABELS:
        prices.set_price("colours", label, "60", "90", currency="EUR")
    body = raw_scan(client, png_bytes((128, 128, 128)), price="12.50").json()
    assert body["sure"] is False
    assert body["deal"] == f"if it is {body['label']}: typical 60-90 EUR, you pay 12.50: about 83% below"


def test_unreadable_price_list_does_not_fail_the_scan(client):
    path = prices.price_list_path("colours")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("this,is,not,a,price,list\n")
    response = raw_scan(client, png_bytes((255, 0, 0)), price="10")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["typical_known"] is False
    assert body["deal"].startswith("cannot check the deal: ") and "lacks column(s)" in body["deal"]


def test_failed_image_keeps_the_price_and_has_no_deal(client):
    prices.set_price("colours", "red", "60", "90")
    body = assert_error(raw_scan(client, b"not a picture", price="10"), 400, "not a recognised image format")
    assert body["price_paid"] == "10"
    assert body["deal"] is None and body["typical_known"] is None


# -- feedback ---------------------------------------------------------------------------------

def post_feedback(client: TestClient, data: bytes | None = None, domain: str = "colours", label: str = "red",
                  **kwargs) -> httpx.Response:
    params = {"domain": domain, "label": label, **kwargs.pop("params", {})}
    if data is not None:
        kwargs.setdefault("content", data)
        kwargs.setdefault("headers", {"content-type": "image/png"})
    return client.post("/v1/feedback", params=params, **kwargs)


def inbox_files(domain: str) -> list[Path]:
    folder = paths.feedback_dir(domain)
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []


def test_feedback_files_the_image_once_and_the_latest_label_wins(client):
    image = png_bytes((200, 0, 0))
    digest = hashlib.sha256(image).hexdigest()
    response = post_feedback(client, files={"file": ("IMG_1.png", image, "image/png")})
    assert response.status_code == 200, response.text
    body = response.json()
    target = paths.feedback_dir("colours") / "red" / f"{digest}.png"
    assert body == {"domain": "colours", "label": "red", "path": str(target), "sha256": digest, "status": "filed",
                    "previous_label": None, "message": "filed as 'red' in the colours feedback inbox",
                    "file": "IMG_1.png"}
    assert target.read_bytes() == image
    # The same bytes again (raw body this time): nothing new is written.
    again = post_feedback(client, image).json()
    assert again["status"] == "already filed"
    assert again["message"] == "already filed as 'red' in the colours feedback inbox"
    assert inbox_files("colours") == [target]
    # Under another label it moves: one photo never teaches two answers.
    moved = post_feedback(client, image, label="green").json()
    assert moved["status"] == "relabelled" and moved["previous_label"] == "red"
    assert moved["message"] == "moved from 'red' to 'green' in the colours feedback inbox"
    assert inbox_files("colours") == [paths.feedback_dir("colours") / "green" / f"{digest}.png"]


def test_feedback_needs_no_model(client):
    body = post_feedback(client, jpeg_bytes(), domain="no-model", label="b").json()
    assert body["status"] == "filed"
    assert Path(body["path"]).parent == paths.feedback_dir("no-model") / "b"
    assert Path(body["path"]).suffix == ".jpg"


@pytest.mark.parametrize("label, new_label, fragments", [
    ("purple", False, ("'purple' is not a label of domain 'colours'", "does not accept new labels")),
    ("purple", True, ("does not accept new labels",)),
    ("../red", False, ("'../red' contains a path separator",)),
    ("Red", False, ("not a label of domain 'colours'",)),
    ("x" * 65, False, ("max 64",)),
])
def test_refused_feedback_label_is_400_and_files_nothing(client, label, new_label, fragments):
    response = post_feedback(client, png_bytes(), label=label, params={"new_label": str(new_label).lower()})
    assert_error(response, 400, *fragments)
    assert inbox_files("colours") == []


def test_new_label_only_where_the_domain_allows_it(client):
    image = png_bytes((0, 128, 128))
    assert_error(post_feedback(client, image, domain="palette", label="teal"), 400,
                 "'teal' is not a label of domain 'palette'", "send new_label=true")
    body = post_feedback(client, image, domain="palette", label="teal", params={"new_label": "true"}).json()
    assert body["status"] == "filed"
    assert Path(body["path"]).parent == paths.feedback_dir("palette") / "teal"
    # Once filed it is a known label of the inbox: listed, and accepted without new_label.
    palette = {row["name"]: row for row in client.get("/v1/domains").json()["domains"]}["palette"]
    assert palette["feedback_labels"] == [*RGB_LABELS, "teal"]
    assert post_feedback(client, png_bytes((0, 120, 120)), domain="palette", label="teal").json()["status"] == "filed"
    assert_error(post_feedback(client, image, domain="palette", label="Teal", params={"new_label": "1"}), 400,
                 "only in letter case")
    assert_error(post_feedback(client, image, domain="colours", label="teal", params={"new_label": "true"}), 400,
                 "does not accept new labels")


@pytest.mark.parametrize("params, fragment", [
    ({"domain": None}, "query parameter 'domain'"),
    ({"label": None}, "query parameter 'label'"),
    ({"label": ""}, "query parameter 'label'"),
    ({"new_label": "perhaps"}, "query parameter 'new_label'"),
])
def test_bad_feedback_parameters_are_400(client, params, fragment):
    query = {k: v for k, v in {"domain": "colours", "label": "red", **params}.items() if v is not None}
    response = client.post("/v1/feedback", params=query, content=png_bytes(), headers={"content-type": "image/png"})
    assert_error(response, 400, fragment)


def test_feedback_for_an_unknown_domain_is_404(client):
    assert_error(post_feedback(client, png_bytes(), domain="hats"), 404, "unknown domain 'hats'", "colours")


def test_feedback_upload_limits_match_scan(client):
    assert post_feedback(client, png_bytes(pad_to=MAX_UPLOAD)).json()["status"] == "filed"
    assert_error(post_feedback(client, png_bytes((1, 2, 3), pad_to=MAX_UPLOAD + 1)), 413, "64 KiB limit")
    assert_error(post_feedback(client, png_bytes(), headers={"content-type": "text/plain"}), 400, "is not accepted")
    assert_error(post_feedback(client, b""), 400, "empty upload")
    assert_error(post_feedback(client, files={"photo": ("a.png", png_bytes(), "image/png")}), 400, "no 'file' field")


def test_a_full_disk_is_reported_in_the_error_shape(client, monkeypatch):
    def no_space(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(feedback, "atomic_write_bytes", no_space)
    assert_error(post_feedback(client, png_bytes()), 500, "cannot write to the colours feedback inbox",
                 "No space left on device")


FEEDBACK_GARBAGE = [*GARBAGE, pytest.param(png_declaring(60_000, 60_000), "image/png", id="decompression-bomb")]


@pytest.mark.parametrize("data, content_type", FEEDBACK_GARBAGE)
def test_garbage_feedback_is_refused_with_a_reason_never_500(client, data, content_type):
    response = post_feedback(client, data, headers={"content-type": content_type})
    assert_error(response, response.status_code)
    assert 400 <= response.status_code < 500
    assert inbox_files("colours") == []


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2000),
       prefix=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"II*\x00"]))
def test_random_feedback_bytes_never_cause_a_server_error(client, data, prefix):
    response = post_feedback(client, prefix + data, headers={"content-type": "application/octet-stream"})
    assert response.status_code < 500, response.text
    assert inbox_files("colours") == []


# -- engine, threads and concurrency ----------------------------------------------------------

class RecordingEngine(Engine):
    """An engine that notes where and how many scans run at once (each scan takes >= 0.15 s)."""

    def __init__(self) -> None:
        super().__init__(intra_threads=1)
        self.lock = threading.Lock()
        self.active = 0
        self.peak = 0
        self.on_event_loop: list[bool] = []

    def classify(self, model, source, top_k=3, **options):
        try:
            asyncio.get_running_loop()
            self.on_event_loop.append(True)
        except RuntimeError:
            self.on_event_loop.append(False)
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            time.sleep(0.15)
            return super().classify(model, source, top_k, **options)
        finally:
            with self.lock:
                self.active -= 1


def test_scans_run_off_the_event_loop_with_bounded_concurrency(domains):
    engine = RecordingEngine()
    app = create_app(engine=engine, max_upload_bytes=MAX_UPLOAD, max_concurrency=2)
    image = png_bytes((0, 255, 0))

    async def five_at_once():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            tasks = [asyncio.create_task(http.post("/v1/scan", params={"domain": "colours"}, content=image,
                                                   headers={"content-type": "image/png"})) for _ in range(5)]
            deadline = time.monotonic() + 10
            while engine.active == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            # The event loop still answers while scans run in their threads.
            health = await http.get("/healthz")
            scanning_during_health = engine.active > 0
            return await asyncio.gather(*tasks), health, scanning_during_health

    responses, health, scanning_during_health = asyncio.run(five_at_once())
    assert [r.json()["label"] for r in responses] == ["green"] * 5
    assert engine.on_event_loop == [False] * 5
    assert engine.peak == 2
    assert health.status_code == 200 and scanning_during_health
    waits = sorted(r.json()["timing_ms"]["waiting"] for r in responses)
    assert waits[-1] >= 250  # the fifth scan waited two rounds for a free slot
    # The app shares one engine: the model was opened once for five scans.
    assert len(engine._models) == 1


def test_default_app_uses_the_process_engine(domains):
    app = create_app()
    assert app.state.service.engine is default_engine()
    assert app.state.max_upload_bytes == 20 * 1024 * 1024


# -- the command ------------------------------------------------------------------------------

def test_serve_command_without_the_extra_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # importlib.util.find_spec() -> None
    result = CliRunner().invoke(build_app(), ["serve"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "fastapi" in lines[0] and "pip install 'tagteller[serve]'" in lines[0]


def test_serve_command_module_imports_nothing_heavy():
    code = ("import sys, tagteller.cli.serve; "
            "heavy = [m for m in ('fastapi', 'uvicorn', 'starlette', 'tensorflow') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_command_serves_on_localhost(domains, tmp_path):
    port = free_port()
    env = {**os.environ, "TAGTELLER_PLUGINS": ""}
    proc = subprocess.Popen([str(TAGTELLER), "serve", "--port", str(port), "--max-upload-mb", "0.5"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"server did not start: {proc.stdout.read() if proc.poll() is not None else ''}")
                time.sleep(0.1)
        assert health.json()["status"] == "ok"
        limits = httpx.get(f"http://127.0.0.1:{port}/v1/domains", timeout=5).json()["limits"]
        assert limits["max_upload_bytes"] == 512 * 1024
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert 'capture="environment"' in page.text
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=15)
    assert f"http://127.0.0.1:{port}/" in output
    assert "warning" not in output.lower()  # loopback: no exposure warning


# -- first contact (issue 15): prices as people type them, the deal after the photo, typical prices --

@pytest.mark.parametrize("params, fragment", [
    ({"price": "1_000"}, "without '_'"),
    ({"price": "1e3"}, "no exponent"),
    ({"price": "1E-2"}, "no exponent"),
    ({"price": "١٢"}, "digits 0-9"),  # Arabic-Indic digits
    ({"price": "１２"}, "digits 0-9"),  # fullwidth digits
    ({"price": "0.001", "currency": "EUR"}, "less than the smallest EUR unit (0.01)"),
    ({"price": "0.5", "currency": "JPY"}, "less than the smallest JPY unit (1)"),
])
def test_prices_people_mistype_are_400_with_the_reason(client, params, fragment):
    response = client.post("/v1/scan", params={"domain": "colours", **params}, content=png_bytes(),
                           headers={"content-type": "image/png"})
    assert_error(response, 400, fragment)


def test_price_below_the_ranges_smallest_unit_is_400(client):
    prices.set_price("colours", "red", "60", "90", currency="EUR")
    assert_error(raw_scan(client, png_bytes((255, 0, 0)), price="0.004"), 400, "smallest EUR unit")
    # Three decimals are a real amount in Kuwaiti dinar.
    body = raw_scan(client, png_bytes((255, 0, 0)), price="0.005", currency="KWD").json()
    assert body["price_paid"] == "0.005" and body["typical_known"] is False


def test_deal_for_a_label_already_told(client):
    prices.set_price("colours", "red", "60", "90", currency="EUR", note="three shops")
    response = client.get("/v1/deal", params={"domain": "colours", "label": "red", "price": "12.50"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["domain"] == "colours" and body["label"] == "red" and body["price"] == 12.5
    assert {name: body[name] for name in DEAL_RESPONSE_FIELDS} == {
        "price_paid": "12.50", "typical_low": "60.00", "typical_high": "90.00", "currency": "EUR",
        "deal": "typical 60-90 EUR, you pay 12.50: about 83% below", "price_source": "your price list",
        "typical_known": True, "deal_position": "below",
    }
    # The scan's own deal and this one are the same sentence.
    scanned = raw_scan(client, png_bytes((255, 0, 0)), price="12.50").json()
    assert {name: scanned[name] for name in DEAL_RESPONSE_FIELDS} == {name: body[name] for name in DEAL_RESPONSE_FIELDS}
    unsure = client.get("/v1/deal", params={"domain": "colours", "label": "red", "price": "120", "sure": "false"})
    assert unsure.json()["deal"] == "if it is red: typical 60-90 EUR, you pay 120: about 60% above"
    unknown = client.get("/v1/deal", params={"domain": "colours", "label": "green", "price": "5"}).json()
    assert unknown["typical_known"] is False and unknown["deal"] == "no typical price for green"


@pytest.mark.parametrize("params, code, fragment", [
    ({"price": "12,50"}, 400, "use '.' as the decimal point"),
    ({"price": "1e3"}, 400, "no exponent"),
    ({"price": "0.001", "currency": "EUR"}, 400, "smallest EUR unit"),
    ({"price": "5", "currency": "euros"}, 400, "three-letter"),
    ({"price": None}, 400, "query parameter 'price'"),
    ({"label": "purple"}, 400, "'purple' is not a label of domain 'colours'"),
    ({"label": "../red"}, 400, "path separator"),
    ({"domain": "hats"}, 404, "unknown domain 'hats'"),
])
def test_bad_deal_requests_say_why(client, params, code, fragment):
    query = {k: v for k, v in {"domain": "colours", "label": "red", "price": "10", **params}.items() if v is not None}
    assert_error(client.get("/v1/deal", params=query), code, fragment)


def test_typical_price_set_from_the_api_is_the_cli_price_list(client):
    response = client.put("/v1/prices", params={"domain": "colours", "label": "red", "low": "60", "high": "90",
                                                "currency": "eur", "note": "from my phone"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == {"domain": "colours", "label": "red", "low": "60.00", "high": "90.00", "currency": "EUR",
                    "range": "60-90 EUR", "note": "from my phone", "source": "your price list", "previous": None,
                    "path": str(prices.price_list_path("colours")),
                    "message": "red: typical 60-90 EUR, saved in your price list"}
    # The very list `tagteller prices` edits and scans read.
    assert prices.PriceBook("colours").lookup("red") == prices.PriceRange("60", "90", "EUR", "your price list",
                                                                      "from my phone")
    listed = CliRunner().invoke(build_app(), ["prices", "list", "--domain", "colours"])
    assert "red" in listed.output and "60-90 EUR" in listed.output
    again = client.put("/v1/prices", params={"domain": "colours", "label": "red", "low": "50", "high": "70"}).json()
    assert again["previous"]["range"] == "60-90 EUR"
    assert again["message"] == "red: typical 50-70 EUR (was 60-90 EUR), saved in your price list"
    deal = client.get("/v1/deal", params={"domain": "colours", "label": "red", "price": "60"}).json()
    assert deal["deal"] == "typical 50-70 EUR, you pay 60: within the typical range"


@pytest.mark.parametrize("params, fragment", [
    ({"low": "12,50"}, "use '.' as the decimal point"),
    ({"high": "1_000"}, "without '_'"),
    ({"low": "90", "high": "60"}, "more than high"),
    ({"low": "0.001"}, "smallest EUR unit"),
    ({"currency": "euro"}, "three-letter"),
    ({"label": "purple"}, "not a label of domain 'colours'"),
    ({"label": "CON"}, "device name"),
    ({"note": "two\nlines"}, "one line"),
])
def test_bad_typical_prices_are_400_and_save_nothing(client, params, fragment):
    query = {"domain": "colours", "label": "red", "low": "60", "high": "90", **params}
    assert_error(client.put("/v1/prices", params=query), 400, fragment)
    assert not prices.price_list_path("colours").exists()


def test_typical_price_with_a_bad_row_in_the_list_keeps_the_file(client):
    path = prices.price_list_path("colours")
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "label,low,high,currency,note\nred,60,ninety,EUR,\n"
    path.write_text(text)
    assert_error(client.put("/v1/prices", params={"domain": "colours", "label": "blue", "low": "1", "high": "2"}),
                 400, "fix or delete the bad row")
    assert path.read_text() == text


def test_limits_name_the_image_formats(client):
    from tagteller.imaging import PHOTO_FORMATS

    formats = client.get("/v1/domains").json()["limits"]["image_formats"]
    assert {"JPEG", "PNG", "WebP"} <= set(formats)
    assert len(formats) == len(PHOTO_FORMATS)


@pytest.mark.parametrize("content_type", ["image/heic", "image/heif", "image/avif"])
def test_phone_formats_pass_the_upload_check(client, content_type):
    """HEIC/HEIF/AVIF are let through to the decoder (raw and multipart): never refused by type."""
    for response in (scan(client, content=png_bytes((0, 0, 255)), headers={"content-type": content_type}),
                     scan(client, files={"file": ("IMG_0001.heic", png_bytes((0, 0, 255)), content_type)})):
        assert response.status_code == 200, response.text
        assert response.json()["label"] == "blue"


def test_docs_pages_work_offline(client):
    import re

    for page in ("/docs", "/redoc"):
        response = client.get(page)
        assert response.status_code == 200
        html = response.text
        assert "http://" not in html and "https://" not in html, f"{page} loads something from the internet"
        assets = re.findall(r"""(?:src|href)=["']?([^"' >]+)""", html) + re.findall(r"url: *'([^']+)'", html)
        assert any(a.endswith(".js") for a in assets), assets
        for asset in assets:
            if asset.startswith("/"):
                fetched = client.get(asset)
                assert fetched.status_code == 200, asset
                assert len(fetched.content) > 100, asset


# -- feedback labels as people type them ------------------------------------------------------

@pytest.mark.parametrize("label, fragment", [
    ("nіke", "mixes Latin and Cyrillic letters"),  # a Cyrillic i
    ("navy.", "ends with '.'"),
    ("CON", "device name Windows reserves"),
    ("nul.txt", "device name Windows reserves"),
    ("com1", "device name Windows reserves"),
])
def test_feedback_labels_that_look_like_others_or_break_folders_are_refused(client, label, fragment):
    response = post_feedback(client, png_bytes(), domain="palette", label=label, params={"new_label": "true"})
    assert_error(response, 400, fragment)
    assert inbox_files("palette") == []


def test_feedback_labels_are_nfkc_normalised(client):
    body = post_feedback(client, png_bytes(), domain="palette", label="ｒｅｄ").json()  # fullwidth letters
    assert body["label"] == "red" and body["status"] == "filed"
    body = post_feedback(client, png_bytes((9, 9, 9)), domain="palette", label="ﬁsh",  # the "fi" ligature
                         params={"new_label": "true"}).json()
    assert body["label"] == "fish"
    assert [p.parent.name for p in inbox_files("palette")] == ["fish", "red"]


def test_a_new_label_without_photos_leaves_the_list(client):
    image = png_bytes((0, 128, 128))

    def palette_labels() -> list[str]:
        rows = client.get("/v1/domains").json()["domains"]
        return {row["name"]: row for row in rows}["palette"]["feedback_labels"]

    post_feedback(client, image, domain="palette", label="teal", params={"new_label": "true"})
    assert palette_labels() == [*RGB_LABELS, "teal"]
    moved = post_feedback(client, image, domain="palette", label="green").json()
    assert moved["status"] == "relabelled" and moved["previous_label"] == "teal"
    assert palette_labels() == list(RGB_LABELS)
    assert_error(post_feedback(client, png_bytes((0, 120, 120)), domain="palette", label="teal"), 400,
                 "send new_label=true")


# -- `tagteller serve`: the real port, the address a phone opens ---------------------------------

def start_serve(*args: str) -> tuple[subprocess.Popen, list[str]]:
    """``tagteller serve ARGS`` in a subprocess; returns it once it printed its page URL, and the
    lines it printed until then."""
    env = {**os.environ, "TAGTELLER_PLUGINS": ""}
    proc = subprocess.Popen([str(TAGTELLER), "serve", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=env, text=True)
    lines: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if "Application startup complete" in line:
            return proc, lines
    proc.kill()
    proc.communicate(timeout=10)
    pytest.fail("tagteller serve did not start:\n" + "\n".join(lines))


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.communicate(timeout=15)


def printed_url(lines: list[str], words: str) -> str:
    import re

    found = [re.search(r"http://\S+?/(?=\s|$)", line) for line in lines if words in line]
    assert found and found[0], f"no line with {words!r} and a URL in {lines}"
    return found[0].group(0)


def test_serve_on_port_0_prints_the_port_it_got(domains):
    proc, lines = start_serve("--port", "0")
    try:
        url = printed_url(lines, "scanner page at")
        assert url.startswith("http://127.0.0.1:") and not url.startswith("http://127.0.0.1:0/")
        assert httpx.get(url + "healthz", timeout=5).json()["status"] == "ok"
    finally:
        stop(proc)


def test_serve_on_every_interface_prints_an_address_a_phone_can_open(domains):
    from tagteller.serve.addresses import lan_address

    proc, lines = start_serve("--host", "0.0.0.0", "--port", "0", "--qr")
    try:
        assert not any("0.0.0.0:" in line for line in lines if "http://" in line), lines
        local = printed_url(lines, "scanner page at")
        assert httpx.get(local + "healthz", timeout=5).status_code == 200
        lan = lan_address()
        if lan is None:
            assert any("no network address found" in line for line in lines), lines
        else:
            network = printed_url(lines, "on a phone on the same network, open")
            assert network == f"http://{lan}:{local.rsplit(':', 1)[1]}"
            assert httpx.get(network + "healthz", timeout=5).status_code == 200
            assert sum("█" in line for line in lines) > 10  # the QR code (--qr: also when not a terminal)
    finally:
        stop(proc)


def test_serve_on_a_port_in_use_says_so_in_one_line(domains):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(build_app(), ["serve", "--port", str(port)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and f"cannot listen on 127.0.0.1:{port}: address already in use" in lines[0], lines


def test_page_urls_for_each_kind_of_host(monkeypatch):
    from tagteller.serve import addresses

    monkeypatch.setattr(addresses, "lan_address", lambda ipv6=False: "192.168.1.20")
    assert addresses.page_urls("0.0.0.0", 8123) == addresses.PageUrls("http://127.0.0.1:8123/",
                                                                      "http://192.168.1.20:8123/")
    assert addresses.page_urls("::", 8123).network == "http://192.168.1.20:8123/"
    assert addresses.page_urls("127.0.0.1", 80) == addresses.PageUrls("http://127.0.0.1:80/", None)
    assert addresses.page_urls("::1", 80).local == "http://[::1]:80/"
    assert addresses.page_urls("10.0.0.5", 80).network == "http://10.0.0.5:80/"
    monkeypatch.setattr(addresses, "lan_address", lambda ipv6=False: None)
    offline = addresses.page_urls("0.0.0.0", 8123)
    assert offline.network is None and offline.no_lan_address


@pytest.mark.parametrize("price, currency, fragment", [
    ("1.000", "EUR", "price 1.000: EUR has 2 decimals, not 3 (if '.' separates thousands, write 1000)"),
    ("1.5", "JPY", "price 1.5: JPY has 0 decimals, not 1"),
])
def test_more_decimals_than_the_currency_has_is_ambiguous(client, price, currency, fragment):
    assert_error(client.get("/v1/deal", params={"domain": "colours", "label": "red", "price": price,
                                                "currency": currency}), 400, fragment)
    # Without a currency, the typical range's decides.
    prices.set_price("colours", "red", "60", "90", currency=currency)
    assert_error(client.get("/v1/deal", params={"domain": "colours", "label": "red", "price": price}), 400, fragment)
    body = client.get("/v1/deal", params={"domain": "colours", "label": "red", "price": "0.005",
                                          "currency": "KWD"}).json()
    assert body["price_paid"] == "0.005"  # three decimals are right in Kuwaiti dinar
