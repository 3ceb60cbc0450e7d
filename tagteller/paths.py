"""Where tagteller keeps the user's files: installed models, run histories, config, cache.

Everything lives under the platform's user folders (platformdirs), or under ``$TAGTELLER_HOME``
when that is set (tests and portable installs use it)::

    <data>/models/<domain>.onnx      installed (trained) models; they shadow the shipped ones
    <data>/runs/<domain>/            training run history (checkpoints, logs, fingerprints)
    <data>/feedback/<domain>/        corrections filed from scans
    <config>/                        price lists and other user settings
    <cache>/                         downloaded datasets (e.g. the demo's Fashion-MNIST test split)
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import platformdirs

from tagteller.names import validate_domain_name

APP = "tagteller"


def _home() -> Path | None:
    value = os.environ.get("TAGTELLER_HOME")
    return Path(value).expanduser() if value else None


def data_dir() -> Path:
    home = _home()
    return home / "data" if home else Path(platformdirs.user_data_dir(APP))


def domain_folders(area: str) -> list[Path]:
    """The folders under ``data_dir() / area`` (``feedback``, ``taught``) named as valid domains,
    sorted by name; other entries are not a domain's and are left out."""
    from tagteller.errors import InvalidNameError

    root = data_dir() / area
    if not root.is_dir():
        return []
    found = []
    for entry in sorted(root.iterdir()):
        if not entry.is_dir():
            continue
        try:
            validate_domain_name(entry.name)
        except InvalidNameError:
            continue
        found.append(entry)
    return found


def config_dir() -> Path:
    home = _home()
    return home / "config" if home else Path(platformdirs.user_config_dir(APP))


def cache_dir() -> Path:
    home = _home()
    return home / "cache" if home else Path(platformdirs.user_cache_dir(APP))


def installed_models_dir() -> Path:
    return data_dir() / "models"


def installed_model_path(domain: str) -> Path:
    """The path a trained model for ``domain`` is installed at (it may not exist)."""
    return installed_models_dir() / f"{validate_domain_name(domain)}.onnx"


def runs_dir(domain: str) -> Path:
    return data_dir() / "runs" / validate_domain_name(domain)


def feedback_dir(domain: str) -> Path:
    return data_dir() / "feedback" / validate_domain_name(domain)


_ABSOLUTE = re.compile(r"(?<![^\s\"'=(])/(?:[^\s\"'=()]+)")


def portable_paths(text: str, base: Path | None = None) -> str:
    """``text`` (a command line, say) with each absolute path made machine-neutral, for what a
    shipped model records about how it was made: under ``base`` (the working folder) relative to
    it, under its parent as ``../...``, elsewhere only its last part (``.../name``)."""
    base = (base or Path.cwd()).resolve()

    def neutral(match: re.Match[str]) -> str:
        path = Path(match.group(0))
        for root, prefix in ((base, ""), (base.parent, "../")):
            try:
                rel = path.relative_to(root)
            except ValueError:
                continue
            return prefix + (rel.as_posix() if str(rel) != "." else ".")
        return f".../{path.name}"

    return _ABSOLUTE.sub(neutral, text)

