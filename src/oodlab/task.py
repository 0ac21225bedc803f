"""The Lightning task: a timm backbone plus a pluggable loss head.

``__init__`` builds the network through two named functions, :func:`create_backbone` (timm's
registry) and :func:`build_loss_head` (the ``loss`` config: ``loss.tau`` reaches
``LogitNormHead.__init__`` there). A new loss is a new head (oodlab.losses), never a change
here. Every argument is a plain Python value, so checkpoints load with ``weights_only=True``.

The training step never waits for the device: the loss's finiteness is tracked on the device
and checked every ``nan_check_every`` steps and at the end of each epoch.

A step runs the backbone once, on the (possibly altered) ID batch and, when the run draws
outliers (``outliers=``, oodlab.data.outliers) and the head uses them, the step's outlier batch
after it; the head's ``training_loss`` gets the features. What ``train/loss``, ``val/loss`` and
the logit-norm curves mean is defined once, for every head, in :class:`oodlab.losses.LossHead`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from oodlab._infra.instantiate import instantiate
from oodlab.data.outliers import (
    DEFAULT_OUTLIERS,
    OutlierBatches,
    build_outlier_set,
    outlier_batch_size,
    outlier_set_name,
)
from oodlab.errors import ConfigError, NonFiniteLossError
from oodlab.losses import LossHead, build_loss_head
from oodlab.models import OODClassifier, create_backbone
from oodlab.models.transforms import BatchAugment, Normalize

log = logging.getLogger(__name__)


class OODClassificationTask(L.LightningModule):
    #: the network's forward and the backbone's, compiled when ``compile``; kept out of the
    #: module tree (set through ``__dict__``) so state_dict keys stay unchanged
    _forward: Callable[[Tensor], Tensor]
    _features: Callable[[Tensor], Tensor]

    def __init__(
        self,
        backbone: str,
        loss: dict[str, Any],
        num_classes: int,
        in_chans: int,
        mean: list[float],
        std: list[float],
        backbone_kwargs: dict[str, Any] | None = None,
        pretrained: bool = False,
        weights: str | None = None,
        weights_prefix: str | None = None,
        augment: dict[str, Any] | None = None,
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        channels_last: bool = False,
        compile: bool = False,
        nan_check_every: int = 50,
        input_size: list[int] | None = None,
        outliers: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        # the run logs its own flat config (oodlab.run.train); the nested loss dict would
        # overwrite `loss`. input_size (height, width) is only recorded: evaluating a
        # checkpoint checks it
        self.save_hyperparameters(logger=False)
        features = create_backbone(
            backbone,
            in_chans,
            pretrained=pretrained,
            weights=weights,
            weights_prefix=weights_prefix,
            **(backbone_kwargs or {}),
        )
        width: Any = features.num_features  # a timm model's int (nn.Module types it as Tensor)
        head = build_loss_head(loss, in_features=int(width), num_classes=num_classes)
        # outliers: the `outliers` config group ({set, ratio, seed, cache_dir}; set null: none;
        # auto: true, or no config at all: the offline set for the heads that use outliers)
        if outliers is None:
            outliers = dict(DEFAULT_OUTLIERS)
        auto = bool(outliers.get("auto"))
        self.outlier_set = outlier_set_name(outliers)
        if auto and not head.uses_outliers:
            self.outlier_set = None
        if head.uses_outliers and self.outlier_set is None:
            raise ConfigError(
                "outliers",
                "none",
                f"an outlier set for loss={head.name}, e.g. outliers=offline "
                "(conf/outliers/: offline, tiny_images_300k, openood_tin597, openood_imagenet800)",
            )
        if self.outlier_set is not None and not head.uses_outliers:
            log.warning(
                "outliers=%s has no effect on loss=%s: no outliers are drawn",
                self.outlier_set,
                head.name,
            )
            self.outlier_set = None
        self._outlier_batches: OutlierBatches | None = None
        self.model = OODClassifier(features, head)
        self.normalize = Normalize(tuple(mean), tuple(std))
        self.augment = BatchAugment(**(augment or {}))
        self.channels_last = channels_last
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        # compiled forward kept out of the module tree, so state_dict keys stay unchanged
        self.__dict__["_forward"] = torch.compile(self.model) if compile else self.model
        net = self.model.backbone
        self.__dict__["_features"] = torch.compile(net) if compile else net
        # validate_args=False: the checks sync with the device on every update
        accuracy = MulticlassAccuracy(num_classes=num_classes, average="micro", validate_args=False)
        metrics = MetricCollection({"acc": accuracy})
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.nan_check_every = nan_check_every

    @property
    def hp(self) -> Any:
        """The saved arguments (Lightning types ``hparams`` as a plain mapping)."""
        return self.hparams

    @property
    def head(self) -> LossHead:
        return self.model.head

    @property
    def outliers_used(self) -> str | None:
        """The outlier set this run trains with (results.json's run.outliers); None: none."""
        return self.outlier_set

    def setup(self, stage: str) -> None:
        if stage != "fit" or self.outlier_set is None or self._outlier_batches is not None:
            return
        shape = (self.hp.in_chans, *(self.hp.input_size or ()))
        data = getattr(getattr(self.trainer, "datamodule", None), "data", None)
        if len(shape) != 3 and data is not None:
            shape = tuple(data.shape)
        if len(shape) == 3:  # else built at the first step, from the ID batch's shape
            self._build_outliers(shape)

    def _build_outliers(self, shape: tuple[int, ...]) -> None:
        cfg = self.hp.outliers or DEFAULT_OUTLIERS
        data = build_outlier_set(cfg, shape, cfg.get("cache_dir"))
        log.info("outliers: %s, %d images", self.outlier_set, len(data))
        # the batch size is fixed at the first step, from the ID batch (ratio x its size)
        rank = int(getattr(self.trainer, "global_rank", 0) or 0)
        seed = int(cfg.get("seed") or 0) + 7919 * rank
        self._outlier_batches = OutlierBatches(data.images, batch_size=0, seed=seed)
        self._outlier_batches.to(self.device)

    def configure_optimizers(self) -> Any:
        hp = self.hp
        opt_cfg = dict(hp.optimizer or {"_target_": "torch.optim.AdamW", "lr": 1e-3})
        optimizer = instantiate(opt_cfg, params=self.parameters(), _convert_="all")
        if not hp.scheduler:
            return optimizer
        sched_cfg = dict(hp.scheduler)
        interval = sched_cfg.pop("interval", "epoch")
        steps = self.trainer.estimated_stepping_batches
        if "total_steps" in sched_cfg and sched_cfg["total_steps"] is None:
            sched_cfg["total_steps"] = int(steps)
        if "T_max" in sched_cfg and sched_cfg["T_max"] is None:
            sched_cfg["T_max"] = int(steps) if interval == "step" else self.trainer.max_epochs
        scheduler = instantiate(sched_cfg, optimizer=optimizer, _convert_="all")
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": interval},
        }

    # -- steps ------------------------------------------------------------------------------
    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, labels = batch[0], batch[1]
        training = self.trainer is not None and self.trainer.training
        return self._network_input(images, training), labels

    def _network_input(self, images: Tensor, training: bool) -> Tensor:
        """uint8 images -> the backbone's input: [0, 1], augmented in training, normalised."""
        x = images.float().div_(255.0)
        if training:
            x = self.augment(x)
        x = self.normalize(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def forward(self, x: Tensor) -> Tensor:
        return self._forward(x)

    def on_train_start(self) -> None:
        # global step of the next training step, and of the first non-finite loss (-1: none)
        self._step = torch.tensor(self.global_step, device=self.device)
        self._first_bad_step = torch.tensor(-1, device=self.device)
        if self._outlier_batches is not None:
            self._outlier_batches.to(self.device)

    def _outlier_input(self, batch_idx: int, id_batch_size: int) -> Tensor:
        """This step's outlier batch, drawn on the device and prepared like the ID batch."""
        batches = self._outlier_batches
        assert batches is not None
        if batches.batch_size == 0:
            cfg = self.hp.outliers or DEFAULT_OUTLIERS
            ratio, default = cfg.get("ratio"), self.head.outlier_ratio
            batches.batch_size = outlier_batch_size(ratio, default, id_batch_size)
        return self._network_input(batches.batch(self.current_epoch, batch_idx), True)

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, Tensor]:
        x, y = batch
        x, targets = self.head.prepare_batch(x, y)
        outliers = None
        if self.outlier_set is not None:
            if self._outlier_batches is None:  # a task trained without a data module
                self._build_outliers(tuple(batch[0].shape[1:]))
            outliers = self._outlier_input(batch_idx, len(y))
            x, targets, outliers = self.head.mix_outliers(x, targets, outliers)
        n = x.shape[0]
        if outliers is not None:
            x = torch.cat([x, outliers])
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
        features = self._features(x)
        outlier_features = None if outliers is None else features[n:]
        loss = self.head.training_loss(features[:n], targets, outlier_features)
        # the evaluation logits of the loader's ID images: accuracy and the logit-norm curve
        with torch.no_grad():
            logits = self.head(features[: len(y)].detach())
        bad = ~torch.isfinite(loss.detach()) & (self._first_bad_step < 0)
        self._first_bad_step = torch.where(bad, self._step, self._first_bad_step)
        self._step += 1
        self.train_metrics.update(logits, y)
        self.log("train/loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(y))
        self.log_dict(
            self.train_metrics, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y)
        )
        return {"loss": loss, "logits": logits}

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if (batch_idx + 1) % self.nan_check_every == 0:
            self.check_finite()

    def on_train_epoch_end(self) -> None:
        self.check_finite()

    def on_validation_start(self) -> None:
        # validation within an epoch comes before its end: never validate NaN weights
        self.check_finite()

    def check_finite(self) -> None:
        """Stop at the first non-finite loss, naming its step (one device sync per call)."""
        if getattr(self, "_first_bad_step", None) is None:
            return
        step = int(self._first_bad_step)
        if step >= 0:
            raise NonFiniteLossError(step, self.current_epoch, self.head.name)

    def validation_step(
        self, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> dict[str, Tensor]:
        x, y = batch
        features = self._features(x)
        logits = self.head(features)
        if dataloader_idx == 0:
            # the objective on clean ID images, without outliers (LossHead's docstring)
            loss = self.head.training_loss(features, y)
            self.val_metrics.update(logits, y)
            self.log(
                "val/loss",
                loss,
                on_epoch=True,
                prog_bar=True,
                batch_size=len(y),
                add_dataloader_idx=False,
                sync_dist=True,
            )
            self.log_dict(
                self.val_metrics,
                on_epoch=True,
                prog_bar=True,
                batch_size=len(y),
                add_dataloader_idx=False,
            )
        return {"logits": logits}
