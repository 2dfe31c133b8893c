"""``python -m train <recipe> --config my.toml``; ``torchrun --nproc_per_node N -m train <recipe> --config ...``."""
from train.engine.cli import main

if __name__ == "__main__":
    main()
