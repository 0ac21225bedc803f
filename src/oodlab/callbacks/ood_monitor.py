"""Per-epoch logit-norm curves, training loss and validation OOD metrics, kept in torchmetrics
objects so they reduce correctly across processes. Updates never wait for the device; each
epoch ends with one read of the accumulated values."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor
from torchmetrics import MeanMetric

from oodlab.metrics import OODMetrics
from oodlab.outputs.record import empty_history
from oodlab.scores import Outputs, create_score


class OODMonitor(L.Callback):
    """Tracks mean ‖f‖ on train, ID val and one OOD set, and OOD metrics on the validation pair.

    ``history`` holds one entry per epoch and becomes results.json's ``logit_norm`` section
    (with the epoch's mean training loss, ``train_loss``). It is saved in checkpoints, so a
    resumed run continues the curves.
    Only logit scores are monitored here: they need no extra forward pass.

    The norms are of the evaluation logits ``head(features)`` for every head (in training,
    of the loader's ID images only: the ``logits`` the task's training step returns), never
    of a training-only transform; :class:`oodlab.losses.LossHead` defines them once.
    """

    def __init__(self, scores: list[str] | tuple[str, ...] = ("msp",)):
        super().__init__()
        self.score_names = list(scores)
        self.history: dict[str, list[float]] = empty_history()
        self.val_ood_history: dict[str, list[float]] = {}
        self._pending: dict[str, float] = {}
        self._roles: list[str] = []

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        dm: Any = getattr(trainer, "datamodule", None)
        self._roles = dm.val_loader_roles() if hasattr(dm, "val_loader_roles") else ["val_id"]
        device = pl_module.device
        # nan_strategy="disable": the NaN check would sync with the device on every update
        self.norms = {
            role: MeanMetric(nan_strategy="disable").to(device)
            for role in ("train", "val_id", "val_ood", "ood")
        }
        self.loss = MeanMetric(nan_strategy="disable").to(device)
        self.scores = {name: create_score(name) for name in self.score_names}
        for score in self.scores.values():
            if score.needs_model:
                raise ValueError(
                    f"callbacks.ood_monitor can only monitor logit scores, not {score.name!r}"
                )
        self.ood_metrics = {name: OODMetrics().to(device) for name in self.score_names}

    @staticmethod
    def _norm(logits: torch.Tensor) -> torch.Tensor:
        return logits.detach().float().norm(dim=1)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.norms["train"].reset()
        self.loss.reset()

    def on_train_batch_end(
        self, trainer, pl_module, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.norms["train"].update(self._norm(outputs["logits"]))
        self.loss.update(outputs["loss"].detach().float(), weight=len(batch[1]))

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        for role in ("val_id", "val_ood", "ood"):
            self.norms[role].reset()
        for metric in self.ood_metrics.values():
            metric.reset()

    def on_validation_batch_end(
        self, trainer, pl_module, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        role = self._roles[dataloader_idx]
        logits = outputs["logits"].detach()
        self.norms[role].update(self._norm(logits))
        if role in ("val_id", "val_ood"):
            out = Outputs(logits=logits, features=logits.new_zeros(0), labels=batch[1])
            for name, score in self.scores.items():
                self.ood_metrics[name].update(
                    score.score(out), torch.full_like(batch[1], role == "val_id", dtype=torch.bool)
                )

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        pending: dict[str, float] = {}
        for role in ("val_id", "ood"):
            if role in self._roles:
                pending[role] = float(self.norms[role].compute())
        if "val_ood" in self._roles:
            for name, metric in self.ood_metrics.items():
                for key, value in metric.compute().items():
                    pending[f"val_ood/{name}/{key}"] = float(value)
        self._pending = pending
        log = {f"norm/{k}": v for k, v in pending.items() if k in ("val_id", "ood")}
        log |= {k: v for k, v in pending.items() if k.startswith("val_ood/")}
        pl_module.log_dict(log, sync_dist=False)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        ran = self.norms["train"].update_called
        train_norm = float(self.norms["train"].compute()) if ran else float("nan")
        pl_module.log("norm/train", train_norm)
        self.history["epoch"].append(trainer.current_epoch)
        self.history["train"].append(train_norm)
        self.history.setdefault("train_loss", []).append(
            float(self.loss.compute()) if ran else float("nan")
        )
        self.history["val_id"].append(self._pending.get("val_id", float("nan")))
        self.history["ood"].append(self._pending.get("ood", float("nan")))
        for key, value in self._pending.items():
            if key.startswith("val_ood/"):
                self.val_ood_history.setdefault(key, []).append(value)
        self._pending = {}

    def best(self, key: str = "val_ood/msp/fpr95") -> float:
        values = self.val_ood_history.get(key, [])
        return min(values) if values else float("nan")

    def last(self, key: str) -> float:
        values = self.val_ood_history.get(key, [])
        return values[-1] if values else float("nan")

    def _epoch_means(self) -> dict[str, MeanMetric]:
        """The training-epoch averages still running when a checkpoint is written mid-epoch."""
        return {"train_norm": self.norms["train"], "train_loss": self.loss}

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"history": self.history, "val_ood_history": self.val_ood_history}
        if hasattr(self, "loss"):
            state["running"] = {
                # the running means' states are tensors (MeanMetric: value, weight)
                name: {k: v.detach().cpu() for k, v in _tensors(metric.metric_state).items()}
                for name, metric in self._epoch_means().items()
            }
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = state_dict.get("history", self.history)
        self.val_ood_history = state_dict.get("val_ood_history", self.val_ood_history)
        # a resumed mid-epoch run continues the epoch's averages (setup() ran before this)
        for name, metric in self._epoch_means().items() if hasattr(self, "loss") else ():
            for key, value in (state_dict.get("running") or {}).get(name, {}).items():
                setattr(metric, key, value.to(getattr(metric, key).device))
                metric._update_count = 1


def _tensors(state: dict[str, Any]) -> dict[str, Tensor]:
    return {k: v for k, v in state.items() if isinstance(v, Tensor)}
