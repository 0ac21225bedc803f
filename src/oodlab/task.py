"""The Lightning task: a timm backbone plus a pluggable loss head.

Laid out like torchgeo's tasks: ``configure_models``, ``configure_losses`` and
``configure_metrics`` build the pieces; the steps only wire them. A new loss is a new head
(oodlab.losses), never a change here.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from omegaconf import OmegaConf
from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from oodlab._infra.errors import NonFiniteLossError
from oodlab._infra.instantiate import instantiate
from oodlab.data.augment import BatchAugment, Normalize
from oodlab.losses.base import LossHead
from oodlab.models import OODClassifier, create_backbone


class BaseTask(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.configure_models()
        self.configure_losses()
        self.configure_metrics()

    def configure_models(self) -> None:
        raise NotImplementedError

    def configure_losses(self) -> None:
        raise NotImplementedError

    def configure_metrics(self) -> None:
        raise NotImplementedError


class OODClassificationTask(BaseTask):
    """Every argument is a plain Python value, so checkpoints load with ``weights_only=True``."""

    def __init__(
        self,
        backbone: str,
        loss: dict[str, Any],
        num_classes: int,
        in_chans: int,
        mean: list[float],
        std: list[float],
        backbone_kwargs: dict[str, Any] | None = None,
        augment: dict[str, Any] | None = None,
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
    ) -> None:
        self.save_hyperparameters()
        super().__init__()

    # -- configure --------------------------------------------------------------------------
    def configure_models(self) -> None:
        hp = self.hparams
        backbone = create_backbone(hp.backbone, hp.in_chans, **(hp.backbone_kwargs or {}))
        head: LossHead = instantiate(
            OmegaConf.create(hp.loss), in_features=backbone.num_features, num_classes=hp.num_classes
        )
        self.model = OODClassifier(backbone, head)
        self.normalize = Normalize(tuple(hp.mean), tuple(hp.std))
        self.augment = BatchAugment(**(hp.augment or {}))

    def configure_losses(self) -> None:
        self.criterion = self.model.head.loss

    def configure_metrics(self) -> None:
        metrics = MetricCollection({"acc": MulticlassAccuracy(num_classes=self.hparams.num_classes, average="micro")})
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        opt_cfg = dict(hp.optimizer or {"_target_": "torch.optim.AdamW", "lr": 1e-3})
        optimizer = instantiate(opt_cfg, params=self.parameters(), _convert_="all")
        if not hp.scheduler:
            return optimizer
        sched_cfg = dict(hp.scheduler)
        interval = sched_cfg.pop("interval", "epoch")
        if "total_steps" in sched_cfg and sched_cfg["total_steps"] is None:
            sched_cfg["total_steps"] = int(self.trainer.estimated_stepping_batches)
        if "T_max" in sched_cfg and sched_cfg["T_max"] is None:
            sched_cfg["T_max"] = (
                int(self.trainer.estimated_stepping_batches) if interval == "step" else self.trainer.max_epochs
            )
        scheduler = instantiate(sched_cfg, optimizer=optimizer, _convert_="all")
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": interval}}

    # -- steps ------------------------------------------------------------------------------
    @property
    def head(self) -> LossHead:
        return self.model.head

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, labels = batch[0], batch[1]
        x = images.float().div_(255.0)
        if self.trainer is not None and self.trainer.training:
            x = self.augment(x)
        return self.normalize(x), labels

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, Tensor]:
        x, y = batch
        x, targets = self.head.prepare_batch(x, y)
        logits = self.model(x)
        loss = self.criterion(logits, targets)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(self.global_step, self.current_epoch, self.head.name, float(loss.detach()))
        self.train_metrics.update(logits[: len(y)].detach(), y)
        self.log("train/loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(y))
        self.log_dict(self.train_metrics, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y))
        return {"loss": loss, "logits": logits.detach()}

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Tensor]:
        x, y = batch
        logits = self.model(x)
        if dataloader_idx == 0:
            loss = self.criterion(logits, y)
            self.val_metrics.update(logits, y)
            self.log("val/loss", loss, on_epoch=True, prog_bar=True, batch_size=len(y), add_dataloader_idx=False, sync_dist=True)
            self.log_dict(self.val_metrics, on_epoch=True, prog_bar=True, batch_size=len(y), add_dataloader_idx=False)
        return {"logits": logits}
