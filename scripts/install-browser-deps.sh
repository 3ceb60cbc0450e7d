#!/usr/bin/env bash
# Install what tests/test_serve_browser.py needs: Debian's `chromium` (apt-get, when missing) and
# the Python `playwright` package into the active environment. Playwright's own browser download
# is never used: the test drives /usr/bin/chromium through `executable_path`.
#
# Usage: scripts/install-browser-deps.sh [PYTHON]
#   PYTHON defaults to $VIRTUAL_ENV/bin/python, else .venv/bin/python, else python3.
set -euo pipefail

PLAYWRIGHT_SPEC="${PLAYWRIGHT_SPEC:-playwright>=1.65,<2}"
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

python="${1:-}"
if [[ -z "$python" ]]; then
    if [[ -n "${VIRTUAL_ENV:-}" && -x "$VIRTUAL_ENV/bin/python" ]]; then
        python="$VIRTUAL_ENV/bin/python"
    elif [[ -x "$repo_root/.venv/bin/python" ]]; then
        python="$repo_root/.venv/bin/python"
    else
        python="$(command -v python3)"
    fi
fi

if [[ -x /usr/bin/chromium ]]; then
    echo "chromium: already installed ($(/usr/bin/chromium --version 2>/dev/null || echo 'version unknown'))"
else
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: /usr/bin/chromium is missing and apt-get is not available to install it" >&2
        exit 1
    fi
    as_root=()
    if [[ "$(id -u)" != 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then
            as_root=(sudo)
        else
            echo "error: installing chromium needs root (or sudo)" >&2
            exit 1
        fi
    fi
    echo "chromium: installing with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    "${as_root[@]}" apt-get update -qq
    "${as_root[@]}" apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
    /usr/bin/chromium --version
fi

if "$python" -c "import playwright.sync_api" >/dev/null 2>&1; then
    echo "playwright: already installed in $python"
else
    echo "playwright: installing '$PLAYWRIGHT_SPEC' into $python"
    "$python" -m pip install --quiet "$PLAYWRIGHT_SPEC"
fi
"$python" -c "import importlib.metadata as m; print('playwright', m.version('playwright'))"
