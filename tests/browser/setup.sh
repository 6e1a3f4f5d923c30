#!/usr/bin/env bash
# Prepare the browser tests and `make lab`: JupyterLab settings without the news pop-up, then (unless
# --settings-only) Debian's chromium at /usr/bin/chromium and the playwright Python package in the venv.
# Usage: bash tests/browser/setup.sh VENV_BIN [--settings-only]
set -euo pipefail

BIN="${1:?usage: setup.sh VENV_BIN [--settings-only]}"
MODE="${2:-}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# 1. JupyterLab user settings (read through JUPYTERLAB_SETTINGS_DIR): no news, no update check.
SETTINGS="$ROOT/.jupyter/lab/user-settings/@jupyterlab/apputils-extension"
mkdir -p "$SETTINGS"
cat > "$SETTINGS/notification.jupyterlab-settings" <<'JSON'
{
    "fetchNews": "false",
    "checkForUpdates": false
}
JSON
[ "$MODE" = "--settings-only" ] && exit 0

# 2. Debian's chromium (Playwright drives it through executable_path: no browser download).
if [ ! -x /usr/bin/chromium ]; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get install -y --no-install-recommends chromium \
        || { $SUDO apt-get update && $SUDO apt-get install -y --no-install-recommends chromium; }
fi

# 3. Playwright for Python (pyproject's dev extra has it; install it here for venvs made before).
if ! "$BIN/python" -c "import playwright.sync_api" 2>/dev/null; then
    "$BIN/python" -m pip install -q --disable-pip-version-check "playwright>=1.40"
fi
echo "browser tests ready: $(/usr/bin/chromium --version 2>/dev/null || echo 'chromium ?')"
