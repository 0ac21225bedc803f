"""``hydra/launcher=local_gpus``: a multirun's jobs on the GPUs of one machine, each job on its own.

Jobs run in fresh processes, as many at once as there are GPU slots: every GPU alone, or
groups of ``gpus_per_job`` GPUs for DDP jobs. A job sees only its slot's GPUs
(``CUDA_VISIBLE_DEVICES``), set before the process starts, so no two running jobs ever share a
GPU. When a job ends, in any order, its slot goes to the next job.

This module imports nothing heavy: Hydra imports every plugin at start-up, ``--help`` too.
"""

import logging
import os
import subprocess
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)


@dataclass
class LocalGpusLauncherConf:
    _target_: str = "hydra_plugins.oodlab_launchers.local_gpus.LocalGpusLauncher"
    # GPUs to share out: null finds them (CUDA_VISIBLE_DEVICES, else every GPU torch sees);
    # a number N means GPUs 0..N-1 (also to test the assignment without GPUs)
    gpus: int | None = None
    # GPUs each job gets (a DDP job with trainer.devices=2 needs 2)
    gpus_per_job: int = 1


ConfigStore.instance().store(
    group="hydra/launcher", name="local_gpus", node=LocalGpusLauncherConf, provider="oodlab"
)


def visible_gpus(count: int | None = None) -> list[str]:
    """The GPU ids this machine offers to the sweep."""
    if count is not None:
        return [str(i) for i in range(count)]
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    try:  # nvidia-smi answers without initialising CUDA in this process
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return (
            [line.strip() for line in out.stdout.splitlines() if line.strip()]
            if out.returncode == 0
            else []
        )
    except (OSError, subprocess.TimeoutExpired):
        return []


def gpu_slots(gpus: Sequence[str], gpus_per_job: int) -> list[tuple[str, ...]]:
    """Disjoint groups of ``gpus_per_job`` GPUs; left-over GPUs stay idle."""
    if gpus_per_job < 1:
        raise ValueError(
            f"hydra.launcher.gpus_per_job={gpus_per_job} is not allowed: it must be an integer >= 1"
        )
    if len(gpus) < gpus_per_job:
        raise ValueError(
            f"hydra.launcher.gpus_per_job={gpus_per_job} but this machine offers "
            f"{len(gpus)} GPU(s) ({', '.join(gpus) or 'none'}); set hydra.launcher.gpus, "
            "or use the basic launcher on a CPU"
        )
    return [
        tuple(gpus[i : i + gpus_per_job])
        for i in range(0, len(gpus) - gpus_per_job + 1, gpus_per_job)
    ]


def run_on_gpus(
    gpus: tuple[str, ...],
    idx: int,
    overrides: Sequence[str],
    hydra_context: HydraContext,
    config: DictConfig,
    task_function: TaskFunction,
    singleton_state: dict[Any, Any],
) -> JobReturn:
    """One job in its own process, seeing only ``gpus`` (set before anything imports CUDA)."""
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    setup_globals()
    Singleton.set_state(singleton_state)
    sweep_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{idx}"
        sweep_config.hydra.job.num = idx
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().set_config(sweep_config)
    return run_job(
        hydra_context=hydra_context,
        config=sweep_config,
        task_function=task_function,
        job_dir_key="hydra.sweep.dir",
        job_subdir_key="hydra.sweep.subdir",
    )


class LocalGpusLauncher(Launcher):
    def __init__(self, gpus: int | None = None, gpus_per_job: int = 1) -> None:
        self.gpus, self.gpus_per_job = gpus, gpus_per_job
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config, self.task_function, self.hydra_context = config, task_function, hydra_context

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        import cloudpickle

        assert (
            self.config is not None
            and self.task_function is not None
            and self.hydra_context is not None
        )
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        free = gpu_slots(visible_gpus(self.gpus), self.gpus_per_job)
        log.info(
            "local_gpus: %d jobs on %d slots %s, sweep output dir: %s",
            len(job_overrides),
            len(free),
            free,
            sweep_dir,
        )
        # cloudpickle, as joblib's loky does: the task function is the script's own (undecorated)
        # main, and Hydra's state holds local resolver functions
        payload = cloudpickle.dumps(
            (self.task_function, self.hydra_context, self.config, Singleton.get_state())
        )
        results: dict[int, JobReturn] = {}
        pending = list(enumerate(job_overrides))
        running: dict[Future, tuple[int, tuple[str, ...]]] = {}
        with FreshProcessPerJob(len(free)) as pool:
            while pending or running:
                while pending and free:
                    index, overrides = pending.pop(0)
                    slot = free.pop(0)
                    log.info(
                        "\t#%d on GPU %s: %s",
                        initial_job_idx + index,
                        ",".join(slot),
                        " ".join(filter_overrides(overrides)),
                    )
                    future = pool.submit(
                        _run_pickled, payload, slot, initial_job_idx + index, list(overrides)
                    )
                    running[future] = (index, slot)
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    index, slot = running.pop(future)
                    results[index] = cloudpickle.loads(future.result())
                    free.append(slot)
        return [results[i] for i in range(len(job_overrides))]


class FreshProcessPerJob:
    """Runs each job in a process of its own, started for it: CUDA reads CUDA_VISIBLE_DEVICES
    once per process. One single-worker executor per job rather than ``max_tasks_per_child=1``,
    which ProcessPoolExecutor has only from Python 3.11 on."""

    def __init__(self, workers: int):
        self.workers = workers
        self._executors: list[ProcessPoolExecutor] = []

    def submit(self, fn: Any, /, *args: Any) -> Future:
        executor = ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"))
        self._executors.append(executor)
        future = executor.submit(fn, *args)
        # the process ends with its job; nothing waits for the shutdown
        future.add_done_callback(lambda _: executor.shutdown(wait=False))
        return future

    def __enter__(self) -> "FreshProcessPerJob":
        return self

    def __exit__(self, *exc: object) -> None:
        for executor in self._executors:
            executor.shutdown(wait=True)


def _run_pickled(payload: bytes, gpus: tuple[str, ...], idx: int, overrides: list[str]) -> bytes:
    import cloudpickle

    task_function, hydra_context, config, state = cloudpickle.loads(payload)
    # the result travels back with cloudpickle too: its config holds this plugin's dataclass,
    # which Hydra's plugin scan gives another identity in each process
    return cloudpickle.dumps(
        run_on_gpus(gpus, idx, overrides, hydra_context, config, task_function, state)
    )
