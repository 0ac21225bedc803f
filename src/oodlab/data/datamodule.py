"""The LightningDataModule: one in-distribution dataset, its OOD suite and a validation OOD set.

In-memory sets (every dataset but image lists) are uint8 tensors; the training and validation
sets are moved to the training device once (``on_device``), and batches are indexed there
(oodlab.data.loaders). Image-list sets (ImageNet) stream from their files through decoding
workers (oodlab.data.streaming), as uint8 batches too. Either way the task converts, augments
and normalises whole batches on the device.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from oodlab._infra.instantiate import instantiate
from oodlab.data.cache import cached_tensors
from oodlab.data.loaders import EvalBatches, TrainBatches
from oodlab.data.preprocessing import Preprocessing
from oodlab.data.streaming import StreamEvalBatches, StreamOptions, StreamTrainBatches
from oodlab.data.types import ImageTensors, SplitData
from oodlab.errors import ConfigError, UnknownNameError

log = logging.getLogger(__name__)


# keys a preset may set on every set it expects (debug=fast: `n`), whichever suite is chosen
PRESET_KEYS = frozenset({"n", "seed"})


def usable_ood_sets(ood_sets: Mapping[str, Any]) -> dict[str, Any]:
    """The set configs that name a builder. An entry holding only preset keys (debug=fast
    shrinking `glyphs` under a suite without glyphs) is skipped with a warning; any other
    entry without a `_target_` is a mistake and says how to add a set."""
    usable = {}
    for name, cfg in ood_sets.items():
        if cfg is None:
            continue
        if "_target_" not in cfg:
            if set(cfg) <= PRESET_KEYS:
                log.warning(
                    "ood.sets.%s only sets %s and names no OOD set in this suite: skipped",
                    name,
                    sorted(cfg),
                )
                continue
            raise ConfigError(
                f"ood.sets.{name}",
                dict(cfg),
                f"an OOD set config, e.g. +ood_set@ood.sets.{name}=folder",
            )
        usable[name] = cfg
    return usable


def build_ood_set(
    cfg: DictConfig | Mapping,
    shape: tuple[int, int, int],
    cache_dir: str | Path | None,
    preprocessing: Preprocessing | None = None,
    options: StreamOptions | None = None,
) -> Any:
    """Instantiate one OOD set config (a ``_partial_`` builder) for the ID image shape.

    Synthetic sets are cached by a hash of their config and the shape, so later runs skip
    cropping, rendering and resizing. A ``streaming: true`` config (image lists) returns a
    streaming Dataset, built with the ID data's ``preprocessing`` and loading ``options``.
    """
    cfg = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(dict(cfg))
    if cfg.get("streaming"):
        settings = dict(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
        settings.pop("streaming")
        settings.pop("cacheable", None)
        builder = instantiate(OmegaConf.create(settings), _convert_="all")
        return builder(shape=shape, preprocessing=preprocessing, options=options)
    # `cacheable: false` marks builders that cache by file contents themselves (image folders)
    cacheable = bool(cfg.get("cacheable", True))
    if "cacheable" in cfg:
        resolved = dict(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
        resolved.pop("cacheable")
        cfg = OmegaConf.create(resolved)
    builder = instantiate(cfg, _convert_="all")
    if cache_dir is None or not cacheable:
        return builder(shape=shape)
    key = hashlib.sha1(
        (OmegaConf.to_yaml(cfg, resolve=True) + repr(tuple(shape))).encode()
    ).hexdigest()[:16]
    name = str(cfg.get("_target_", "ood")).rsplit(".", 1)[-1]

    def build() -> dict[str, torch.Tensor]:
        data = builder(shape=shape)
        return {"images": data.images, "labels": data.labels}

    arrays = cached_tensors(Path(cache_dir) / "ood" / f"{name}-{key}.pt", build)
    return ImageTensors(arrays["images"], arrays["labels"])


class OODDataModule(L.LightningDataModule):
    def __init__(
        self,
        dataset: DictConfig,
        ood_sets: Mapping[str, DictConfig],
        val_ood: DictConfig | None,
        curve_ood: str | None = None,
        curve_n: int | None = None,
        batch_size: int = 128,
        eval_batch_size: int = 512,
        cache_dir: str | Path | None = None,
        seed: int = 0,
        on_device: bool = True,
        preprocessing: Preprocessing | None = None,
    ):
        """``preprocessing``: when given (the pretrained weights' resize, crop and statistics),
        image-list sources use it instead of their config's ``preprocessing:`` block; in-memory
        sources ignore it. :attr:`preprocessing` is what was used (None: in-memory data)."""
        super().__init__()
        if batch_size < 1:
            raise ConfigError("data.batch_size", batch_size, "a positive integer")
        if curve_ood is not None and curve_ood not in ood_sets:
            raise UnknownNameError("ood.curve set", curve_ood, ood_sets)
        self.dataset_cfg = dataset
        self.ood_cfgs = usable_ood_sets(ood_sets)
        self.val_ood_cfg = val_ood
        self.curve_ood = curve_ood
        self.curve_n = curve_n
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.cache_dir = cache_dir
        self.seed = seed
        self.on_device = on_device
        self.data: SplitData | None = None
        # a small validation set can be one batch: the other processes then validate on none
        self.allow_zero_length_dataloader_with_multiple_devices = True
        self.ood: dict[str, Any] = {}
        self.val_ood: Any = None
        self.preprocessing_override = preprocessing
        #: the preprocessing streaming sets were decoded with (None: all in memory)
        self.preprocessing: Preprocessing | None = None
        self.stream_options = StreamOptions()

    # -- building -------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.data is not None:
            return
        self.data = self._build_id_data()
        shape = self.data.shape
        self.preprocessing = self.data.preprocessing
        if self.data.streaming:
            self.stream_options = getattr(self.data.train, "options", self.stream_options)
        # streaming OOD sets are decoded as the ID images are (in-memory ID data: to its size)
        pre, options = self.preprocessing, self.stream_options
        self.ood = {
            name: build_ood_set(cfg, shape, self.cache_dir, pre, options)
            for name, cfg in self.ood_cfgs.items()
        }
        if self.val_ood_cfg is not None:
            self.val_ood = build_ood_set(self.val_ood_cfg, shape, self.cache_dir, pre, options)
        streaming = [k for k, v in self.ood.items() if not isinstance(v, ImageTensors)]
        if self.preprocessing is None and streaming:
            self.preprocessing = getattr(self.ood[streaming[0]], "preprocessing", None)
        log.info(
            "data: %s train=%d val=%d test=%d | OOD: %s",
            self.data.name,
            len(self.data.train),
            len(self.data.val),
            len(self.data.test),
            ", ".join(f"{k}={len(v)}" for k, v in self.ood.items()),
        )

    def _build_id_data(self) -> SplitData:
        cfg = self.dataset_cfg
        if not isinstance(cfg, (DictConfig, dict)):
            return cfg
        if self.preprocessing_override is not None and "preprocessing" in cfg:
            # an image-list source: the weights' preprocessing replaces the config's block. It
            # is handed to the builder as it is, not merged into the config, whose schema types
            # the block (and has no `source`, where the preprocessing came from)
            settings = (
                OmegaConf.to_container(cfg, resolve=True)
                if isinstance(cfg, DictConfig)
                else dict(cfg)
            )
            assert isinstance(settings, dict)
            settings.pop("preprocessing")
            build = instantiate(settings, _partial_=True)
            return build(preprocessing=self.preprocessing_override)
        return instantiate(cfg)

    def loading(self) -> dict[str, Any]:
        """How streaming sets are read (for the run record): workers and decoder; {} when
        every set is in memory."""
        if self.data is None or (not self.data.streaming and self.preprocessing is None):
            return {}
        from oodlab.data.streaming import decode_choice

        device, _, _ = self._placement()
        choice = decode_choice(
            self.stream_options.decode, device if device.type == "cuda" else None
        )
        return {"num_workers": self.stream_options.workers, "decode": choice.to_json()}

    @property
    def num_classes(self) -> int:
        assert self.data is not None, "call setup() first"
        return self.data.num_classes

    # -- loaders --------------------------------------------------------------------------
    def _placement(self) -> tuple[torch.device, int, int]:
        """(device, processes, rank) of the trainer; the CPU and one process without one."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return torch.device("cpu"), 1, 0
        device = trainer.strategy.root_device if self.on_device else torch.device("cpu")
        return device, trainer.world_size, trainer.global_rank

    def _placed(self, data: Any, device: torch.device) -> Any:
        if not isinstance(data, ImageTensors) or data.images.device == device:
            return data
        return ImageTensors(data.images.to(device), data.labels.to(device), data.classes)

    def train_dataloader(self) -> TrainBatches | StreamTrainBatches:
        assert self.data is not None
        device, world, rank = self._placement()
        trainer = getattr(self, "trainer", None)
        if not isinstance(self.data.train, ImageTensors):
            root = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
            return StreamTrainBatches(
                self.data.train,
                self.batch_size,
                seed=self.seed,
                epoch=trainer.current_epoch if trainer is not None else 0,
                world_size=world,
                rank=rank,
                device=root,
            )
        return TrainBatches(
            self._placed(self.data.train, device),
            self.batch_size,
            seed=self.seed,
            epoch=trainer.current_epoch if trainer is not None else 0,
            world_size=world,
            rank=rank,
        )

    def val_dataloader(self) -> list[EvalBatches | StreamEvalBatches]:
        """0: ID val; 1: the validation OOD set; 2: the OOD set whose logit norm is tracked."""
        assert self.data is not None
        device, world, rank = self._placement()
        sets = [self.data.val]
        if self.val_ood is not None:
            sets.append(self.val_ood)
        if self.curve_ood is not None:
            sets.append(self.curve_set())
        return [self._eval_batches(d, device, world, rank) for d in sets]

    def _eval_batches(
        self, data: Any, device: torch.device, world: int, rank: int
    ) -> EvalBatches | StreamEvalBatches:
        if isinstance(data, ImageTensors):
            return EvalBatches(self._placed(data, device), self.eval_batch_size, world, rank)
        trainer = getattr(self, "trainer", None)
        root = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        return StreamEvalBatches(
            data, self.eval_batch_size, world_size=world, rank=rank, device=root, persistent=True
        )

    def curve_set(self) -> Any:
        """The tracked OOD set, or a fixed random ``curve_n`` of its images: the mean logit norm
        of a few hundred images is as good a curve, and it is computed every epoch."""
        assert self.curve_ood is not None
        data = self.ood[self.curve_ood]
        if self.curve_n is None or self.curve_n >= len(data):
            return data
        keep = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[: self.curve_n]
        return data.subset(keep.sort().values)

    def val_loader_roles(self) -> list[str]:
        roles = ["val_id"]
        if self.val_ood is not None:
            roles.append("val_ood")
        if self.curve_ood is not None:
            roles.append("ood")
        return roles
