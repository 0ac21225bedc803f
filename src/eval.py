r"""Evaluate a saved checkpoint for OOD detection, without training.

python src/eval.py ckpt_path=logs/runs/<run>/checkpoints/last.ckpt
python src/eval.py ckpt_path=... eval.scores=[msp,energy,odin,knn] \
    trainer=ddp trainer.accelerator=cpu
"""

import hydra
from omegaconf import DictConfig

from oodlab.cli import eval_main, run_hydra


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> float | None:
    return eval_main(cfg)


if __name__ == "__main__":
    # a config error raised while Hydra composes: one line and exit status 1 (oodlab.cli)
    run_hydra(main)
