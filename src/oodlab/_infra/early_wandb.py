"""Start the W&B run in a thread while the run imports torch and Lightning.

``wandb.init`` spends about a second starting W&B's service and waiting for it; done in a
thread at process start it overlaps the imports (5-7 s) and costs nothing. The run logger
(oodlab.runs.build_loggers) then takes the started run instead of starting its own. A run that
resumes an earlier W&B run (``ckpt_path``, ``resume``) starts synchronously, because its id is
in the checkpoint.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger(__name__)

_started: dict[str, Any] = {}


def start(settings: dict[str, Any]) -> None:
    """``settings``: the logger.wandb config (WandbLogger's keys), group filled in."""

    def init() -> None:
        try:
            import wandb

            _started["run"] = wandb.init(
                project=settings.get("project"),
                name=settings.get("name"),
                dir=settings.get("save_dir"),
                mode="offline" if settings.get("offline", True) else "online",
                group=settings.get("group"),
                job_type=settings.get("job_type"),
                tags=list(settings.get("tags") or []),
                reinit="finish_previous",
            )
        except Exception as exc:  # the logger starts its own run instead, and reports the error
            log.debug("early wandb.init failed: %s", exc)

    _started.clear()
    _started["thread"] = threading.Thread(target=init, name="oodlab-wandb-init", daemon=True)
    _started["thread"].start()


def take() -> Any | None:
    """The run started by :func:`start` (waiting for it), or None."""
    thread = _started.pop("thread", None)
    if thread is None:
        return None
    thread.join()
    return _started.pop("run", None)


def discard() -> None:
    """Finish a started run that no logger took (the job failed or was skipped first)."""
    run = take()
    if run is not None:
        run.finish(exit_code=1)
