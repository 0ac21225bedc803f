"""Save a checkpoint and stop cleanly when the run is told to stop.

SIGTERM (``kill``, a cluster's preemption), SIGUSR1 (SLURM's warning before the time limit)
and SIGUSR2 (submitit's) set a flag; at the end of the current training batch the run writes
``checkpoints/last.ckpt`` (atomically) and raises :class:`RunInterrupted`. The run then
records ``status: interrupted`` in results.json, closes its loggers and exits, calling the
handler that was installed before (submitit's requeue on SLURM). ``ckpt_path=last`` or
``resume=true`` continues it, from the middle of the epoch.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

import lightning as L

from oodlab.errors import RunInterrupted

log = logging.getLogger(__name__)

DEFAULT_SIGNALS = ("SIGTERM", "SIGUSR1", "SIGUSR2")


class Preemption(L.Callback):
    def __init__(
        self,
        dirpath: str,
        signals: list[str] | tuple[str, ...] = DEFAULT_SIGNALS,
        filename: str = "last.ckpt",
    ):
        self.path = Path(dirpath) / filename
        self.signals = [getattr(signal, name) for name in signals if hasattr(signal, name)]
        self._previous: dict[int, Any] = {}
        self._received: int | None = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self._received is None:
            log.warning(
                "received %s: saving a checkpoint at the end of this batch",
                signal.Signals(signum).name,
            )
        self._received = signum

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # after Lightning installed its own handlers, so ours runs first and theirs is kept
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in self.signals:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handler)

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if self._received is None:
            return
        loader = trainer.train_dataloader
        if loader is not None and hasattr(loader, "mark_consumed"):
            loader.mark_consumed(batch_idx + 1)
        trainer.save_checkpoint(self.path)
        signum, self._received = self._received, None
        raise RunInterrupted(signum, self.path, self._previous.get(signum))

    def _restore_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_handlers()

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore_handlers()
