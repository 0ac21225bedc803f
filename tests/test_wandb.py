"""W&B through its one module (oodlab.outputs.wandb_run): every key of logger.wandb reaches
wandb.init, and the run's own tags are added once."""

from __future__ import annotations

from pathlib import Path

import pytest

from oodlab.outputs.wandb_run import LOGGER_KEYS, init_kwargs, run_tags


def test_every_key_but_the_loggers_own_reaches_wandb_init():
    settings = {
        "_target_": "lightning.pytorch.loggers.wandb.WandbLogger",
        "project": "p",
        "name": "n",
        "save_dir": "/tmp/x",
        "offline": True,
        "group": None,
        "tags": ["a"],
        "job_type": "train",
        "artifacts": True,
        "log_model": False,
        "notes": "why this run",
        "entity": "team",
        "settings": {"console": "wrap"},
    }
    kwargs = init_kwargs(settings, group="sweep-1")
    assert not set(LOGGER_KEYS) & set(kwargs)
    assert kwargs["dir"] == "/tmp/x" and kwargs["mode"] == "offline"
    assert kwargs["notes"] == "why this run" and kwargs["entity"] == "team"
    assert kwargs["settings"] == {"console": "wrap"} and kwargs["tags"] == ["a"]
    assert kwargs["group"] == "sweep-1", "a multirun's group fills an unset group"
    assert init_kwargs(settings | {"group": "mine"}, group="sweep-1")["group"] == "mine"
    assert init_kwargs({"offline": False})["mode"] == "online"
    resumed = init_kwargs(settings, resume_id="abc")
    assert resumed["id"] == "abc" and resumed["resume"] == "allow"


def test_the_run_tags_follow_one_rule():
    assert run_tags("logitnorm", "mnist5k", "small_cnn", {"tau": 0.04}) == [
        "loss:logitnorm",
        "dataset:mnist5k",
        "backbone:small_cnn",
        "tau:0.04",
    ]
    assert run_tags("ce", "cifar10", evaluation=True) == ["dataset:cifar10", "eval", "loss:ce"]
    assert run_tags(None, "folder", evaluation=True) == ["dataset:folder", "eval"]


@pytest.mark.slow
def test_notes_and_tags_given_on_the_command_line_reach_the_offline_run(run_cli, tmp_path):
    run = tmp_path / "run"
    proc = run_cli(
        "train.py",
        "debug=fast",
        "logger=wandb",
        "+logger.wandb.notes=notes from the command line",
        "+logger.wandb.tags=[user_tag]",
        f"hydra.run.dir={run}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (log,) = Path(run, "wandb").glob("offline-run-*/run-*.wandb")
    recorded = log.read_bytes()  # W&B's record log of the run, protobuf records
    for expected in (
        "notes from the command line",
        "user_tag",
        "loss:logitnorm",
        "dataset:mnist5k",
        "backbone:small_cnn",
        "tau:0.04",
    ):
        assert expected.encode() in recorded, expected
