"""Shared fixtures: a data cache reused by the whole session, composed configs, and a runner
for the real command lines."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data/cache directory for the session: MNIST-5k is parsed once, OOD sets built once."""
    path = Path(os.environ.get("OODLAB_TEST_DATA_DIR") or tmp_path_factory.mktemp("oodlab-data"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def compose_config(
    config_name: str = "train",
    overrides: list[str] | tuple[str, ...] = (),
    *,
    out: Path | None = None,
    data_dir: Path | None = None,
    log_dir: Path | None = None,
) -> DictConfig:
    """Compose conf/<config_name>.yaml like the entry point would: the one compose helper of the
    tests. With ``out`` the config is the job's (Hydra's run dir and ``paths.output_dir``,
    HydraConfig set, the directory made); ``data_dir`` and ``log_dir`` set ``paths``."""
    preset = [
        *([f"paths.data_dir={data_dir}"] if data_dir is not None else []),
        *([f"paths.log_dir={log_dir}"] if log_dir is not None else []),
        *([f"hydra.run.dir={out}"] if out is not None else []),
    ]
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose(config_name, overrides=[*preset, *overrides], return_hydra_config=True)
    if out is not None:
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            cfg.paths.output_dir = str(out)
        out.mkdir(parents=True, exist_ok=True)
    return cfg


@pytest.fixture
def compose_cfg(data_dir: Path, tmp_path: Path):
    """Compose conf/<config_name>.yaml like the entry point would, with outputs in tmp_path."""

    def _compose(
        overrides: list[str] | tuple[str, ...] = (), config_name: str = "train"
    ) -> DictConfig:
        return compose_config(
            config_name,
            overrides,
            out=tmp_path / "run",
            data_dir=data_dir,
            log_dir=tmp_path / "logs",
        )

    yield _compose
    GlobalHydra.instance().clear()


def _env(data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        OODLAB_DATA_DIR=str(data_dir),
        WANDB_SILENT="true",
        WANDB_MODE="offline",
        PYTHONWARNINGS="ignore",
        HYDRA_FULL_ERROR="0",
    )
    return env


@pytest.fixture
def run_cli(data_dir: Path, tmp_path: Path):
    """Run ``python src/<script> args`` as a user would, from a scratch working directory."""

    def _run(
        script: str,
        *args: str,
        timeout: float = 300,
        cwd: Path | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(REPO / "src" / script), *args],
            cwd=cwd or tmp_path,
            env=_env(data_dir) | (extra_env or {}),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return _run


@pytest.fixture(autouse=True)
def _quiet_wandb(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_MODE", "offline")
    yield


# The real sweeps, built once per session (test_sweeps.cached_build) and read by the sweep,
# report and notebook tests.
@pytest.fixture(scope="module")
def grid_sweep(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    from test_sweeps import build_grid_sweep

    return build_grid_sweep(tmp_path_factory, data_dir)


@pytest.fixture(scope="module")
def optuna_study(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    from test_sweeps import build_optuna_study

    return build_optuna_study(tmp_path_factory, data_dir)
