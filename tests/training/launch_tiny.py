"""Run the trainer with the tiny SDXL layout registered in ComfyUI's model detection (for torchrun subprocesses):
``torchrun --nproc_per_node 2 tests/training/launch_tiny.py --config run.toml``."""
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(TESTS.parent), str(TESTS)]

from train import comfy_bridge  # noqa: E402

comfy_bridge.setup_comfy(cpu=True)

from training.tiny_sdxl_file import register  # noqa: E402

from train.ifadapter import main  # noqa: E402

register()
main(sys.argv[1:])
