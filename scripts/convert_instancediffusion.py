"""Convert an InstanceDiffusion checkpoint to a compact safetensors adapter file (loads in seconds).

Usage: ``python scripts/convert_instancediffusion.py instancediffusion_sd15.pth instancediffusion_sd15_fp16.safetensors``
(``--fp32`` keeps full precision). Accepts the official 13.6 GB training snapshot (only the ``ema`` adapter tensors
are read, memory-mapped, no pickle code runs), logtd's ``position_net.ckpt`` (``fusers.ckpt`` and ``scaleu.ckpt``
are found next to it) or an adapter file. Put the result in ``ComfyUI/models/instancediffusion/``.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.instancediffusion.loading import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
