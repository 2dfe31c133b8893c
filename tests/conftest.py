"""Shared fixtures.

``comfy`` boots one real ComfyUI per test session (see ``tests/comfy_env.py``) with this pack and the test-only
nodes loaded; integration tests run API-format graphs through its execution engine. Unit tests of ``core`` never
touch it, so they run without ComfyUI.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

import comfy_env  # noqa: E402

ARTIFACTS = Path(os.environ.get("IFA_TEST_ARTIFACTS", REPO_ROOT / "test-artifacts"))


@pytest.fixture(scope="session")
def comfy(tmp_path_factory):
    """The in-process ComfyUI (2024 build unless ``COMFYUI_PATH`` says otherwise)."""
    cwd = os.getcwd()
    comfy_dir = comfy_env.find_comfyui()
    env = comfy_env.InProcessComfy(comfy_dir, tmp_path_factory.mktemp("comfy"))
    print(f"\n[ifa tests] ComfyUI under test: {comfy_dir} ({env.version})")
    yield env
    os.chdir(cwd)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


def pytest_report_header(config):
    try:
        d = comfy_env.find_comfyui(provision=False)
        return f"ComfyUI: {d} ({comfy_env.comfyui_version(d)})"
    except RuntimeError:
        return "ComfyUI: not provisioned yet (the first integration test provisions the 2024 build)"
