"""Loading the pack never breaks ComfyUI: a capability whose import fails is reported and the rest still loads.

Each case runs a fresh Python process that boots the real ComfyUI in-process with an import hook that makes one
module unimportable, exactly as a missing dependency would.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

TESTS = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import importlib.abc, json, logging, sys, tempfile
    from pathlib import Path
    BLOCK = sys.argv[1]
    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if BLOCK and (name == BLOCK or name.endswith("." + BLOCK)):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None
    sys.meta_path.insert(0, Blocker())
    records = []
    class Keep(logging.Handler):
        def emit(self, r):
            records.append(r.getMessage())
    logging.getLogger().addHandler(Keep())
    sys.path.insert(0, sys.argv[2])
    import comfy_env
    env = comfy_env.InProcessComfy(comfy_env.find_comfyui(), Path(tempfile.mkdtemp()), test_nodes=False)
    names = sorted(n for n in env.nodes.NODE_CLASS_MAPPINGS if n.startswith("IFA"))
    print(json.dumps({"nodes": names, "log": [m for m in records if "comfyui-ifadapter" in m],
                      "core_nodes": len(env.nodes.NODE_CLASS_MAPPINGS)}))
""")


def _boot(block: str) -> dict:
    res = subprocess.run([sys.executable, "-c", SCRIPT, block, str(TESTS)], capture_output=True, text=True,
                         timeout=300, cwd=TESTS.parent)
    assert res.returncode == 0, res.stderr[-4000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_failed_capability_is_reported_and_the_rest_loads():
    full = _boot("")
    blocked = _boot("core.ifadapter")
    assert "IFAInstanceLayout" in blocked["nodes"]
    lost = set(full["nodes"]) - set(blocked["nodes"])
    assert blocked["core_nodes"] > 100  # ComfyUI's own nodes are all there
    assert lost and all(n.startswith("IFA") and "Layout" not in n for n in lost), lost  # only the IFAdapter nodes
    assert lost == {"IFAAdapterLoader", "IFAAdapterConvert", "IFAEncodeAppearanceTokens", "IFABuildSemanticMap",
                    "IFAApplyIFAdapter"}
    assert "IFAApplyInstanceDiffusion" in blocked["nodes"]  # the other back-end is untouched
    assert any("ifadapter nodes are disabled" in m and "pip install -r requirements.txt" in m
               for m in blocked["log"]), blocked["log"]
