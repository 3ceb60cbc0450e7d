"""``tagteller serve``: run the HTTP API and the scanner page with uvicorn (the ``[serve]`` extra).

FastAPI and uvicorn are imported inside the command, so the rest of the CLI never needs them; when
they are missing the command says which ``pip install`` brings them. The listening socket is bound
first (:mod:`tagteller.serve.addresses`), so the printed URLs carry the real port (``--port 0``)
and, for ``--host 0.0.0.0``, the machine's LAN address (with a QR code for a phone's camera).
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Optional

import typer

from tagteller.serve.addresses import ListenError, bound_port, is_loopback, listen_socket, page_urls

INSTALL_HINT = "pip install 'tagteller[serve]'"
#: Open connections uvicorn accepts before answering 503 (each may hold an upload in memory).
CONNECTION_LIMIT = 64


def missing_serve_modules() -> list[str]:
    """The ``[serve]`` extra's modules that cannot be imported here."""
    missing = [name for name in ("fastapi", "uvicorn") if importlib.util.find_spec(name) is None]
    if importlib.util.find_spec("python_multipart") is None and importlib.util.find_spec("multipart") is None:
        missing.append("python-multipart")
    if importlib.util.find_spec("fastapi_offline") is None:
        missing.append("fastapi-offline")
    return missing


def print_qr(url: str) -> bool:
    """A QR code of ``url`` on stderr (for a phone's camera); False when segno is missing."""
    if importlib.util.find_spec("segno") is None:
        return False
    import segno

    segno.make(url, error="m").terminal(out=sys.stderr, compact=True)
    return True


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; 0.0.0.0 makes it reachable from your network (e.g. a phone)."),
    port: int = typer.Option(8000, "--port", "-p", min=0, max=65535, help="Port to listen on (0: any free port; the one chosen is printed)."),
    max_upload_mb: float = typer.Option(20.0, "--max-upload-mb", min=0.01, max=1024, help="Largest image upload accepted, in MiB (larger: HTTP 413)."),
    max_concurrency: Optional[int] = typer.Option(None, "--max-concurrency", min=1, max=64, help="Scans run at once (default: one per core, at most 4)."),
    qr: Optional[bool] = typer.Option(None, "--qr/--no-qr", help="Print a QR code of the address a phone opens (default: when serving to the network on a terminal)."),
    read_text: bool = typer.Option(False, "--read-text", help="Read the text on each photo (OCR, the optional 'ocr' extra) for domains with text cues; a request's read_text=false turns it off."),
) -> None:
    """Serve the scanner page at / and the HTTP API at /v1 (OpenAPI docs at /docs)."""
    from tagteller.cli import fail

    missing = missing_serve_modules()
    if missing:
        raise fail(f"`tagteller serve` needs {', '.join(missing)}: {INSTALL_HINT}")
    if read_text:
        from tagteller.text_cues import require_ocr

        require_ocr("--read-text")
    import uvicorn

    from tagteller.serve.app import create_app

    app = create_app(max_upload_bytes=int(max_upload_mb * 1024 * 1024), max_concurrency=max_concurrency,
                     read_text=read_text)
    try:
        sock = listen_socket(host, port)
    except ListenError as exc:
        raise fail(str(exc)) from None
    urls = page_urls(host, bound_port(sock))
    if not is_loopback(host):
        typer.echo(f"warning: serving on {host}: anyone who can reach this address can use the API "
                   "(there is no authentication)", err=True)
    typer.echo(f"tagteller: scanner page at {urls.local} , API docs at {urls.local}docs", err=True)
    if urls.network is not None and urls.network != urls.local:
        typer.echo(f"tagteller: on a phone on the same network, open {urls.network}", err=True)
    if urls.no_lan_address:
        typer.echo("tagteller: no network address found on this machine (offline?); a phone cannot reach it yet",
                   err=True)
    if urls.network is not None and (qr if qr is not None else sys.stderr.isatty()):
        print_qr(urls.network)
    config = uvicorn.Config(app, log_level="info", limit_concurrency=CONNECTION_LIMIT, timeout_keep_alive=5,
                            server_header=False)
    uvicorn.Server(config).run(sockets=[sock])


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
