"""A Hydra app that records which GPUs a job saw and when it ran (tests/test_launchers.py).

python tests/apps/gpu_probe.py -m hydra/launcher=local_gpus hydra.launcher.gpus=3 job=0,1,2,3,4
"""

import json
import os
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path=None, config_name=None)
def main(cfg: DictConfig) -> float:
    start = time.time()
    # jobs of different lengths, the first of each three the longest, so they finish out of
    # order by whole sleep units, more than processes' start-up times differ on a loaded machine
    time.sleep(float(cfg.get("sleep", 0.5)) * (3 - int(cfg.job) % 3))
    record = {
        "job": int(cfg.job),
        "gpus": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "start": start,
        "end": time.time(),
        "pid": os.getpid(),
    }
    Path(HydraConfig.get().runtime.output_dir, "probe.json").write_text(json.dumps(record))
    return float(cfg.job)


if __name__ == "__main__":
    main()
