"""Train a classifier with a pluggable loss head, then evaluate it for OOD detection.

python src/train.py loss=logitnorm loss.tau=0.04
python src/train.py -m loss=ce,logitnorm seed=0,1
"""

import hydra
from omegaconf import DictConfig

from oodlab.cli import run_hydra, train_main


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return train_main(cfg)


if __name__ == "__main__":
    # a config error raised while Hydra composes: one line and exit status 1 (oodlab.cli)
    run_hydra(main)
