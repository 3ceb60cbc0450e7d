"""``tagteller serve``: run the HTTP API and the scanner page with uvicorn (the ``[serve]`` extra).

FastAPI and uvicorn are imported inside the command, so the rest of the CLI never needs them; when
they are missing the command says which ``pip install`` brings them.
"""

from __future__ import annotations

import importlib.util
import ipaddress
from typing import Optional

import typer

INSTALL_HINT = "pip install 'tagteller[serve]'"
#: Open connections uvicorn accepts before answering 503 (each may hold an upload in memory).
CONNECTION_LIMIT = 64


def missing_serve_modules() -> list[str]:
    """The ``[serve]`` extra's modules that cannot be imported here."""
    missing = [name for name in ("fastapi", "uvicorn") if importlib.util.find_spec(name) is None]
    if importlib.util.find_spec("python_multipart") is None and importlib.util.find_spec("multipart") is None:
        missing.append("python-multipart")
    return missing


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; 0.0.0.0 makes it reachable from your network (e.g. a phone)."),
    port: int = typer.Option(8000, "--port", "-p", min=0, max=65535, help="Port to listen on."),
    max_upload_mb: float = typer.Option(20.0, "--max-upload-mb", min=0.01, max=1024, help="Largest image upload accepted, in MiB (larger: HTTP 413)."),
    max_concurrency: Optional[int] = typer.Option(None, "--max-concurrency", min=1, max=64, help="Scans run at once (default: one per core, at most 4)."),
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
    if not is_loopback(host):
        typer.echo(f"warning: serving on {host}: anyone who can reach this address can use the API "
                   "(there is no authentication)", err=True)
    typer.echo(f"tagteller: scanner page at http://{host}:{port}/ , API docs at http://{host}:{port}/docs", err=True)
    uvicorn.run(app, host=host, port=port, log_level="info", limit_concurrency=CONNECTION_LIMIT,
                timeout_keep_alive=5, server_header=False)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
