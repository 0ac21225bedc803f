"""Streaming batches for sets that do not fit in memory (image lists, e.g. ImageNet).

Images are read by DataLoader workers (``data.num_workers``, default ``min(8, CPU count)``) and
handed over in pinned memory when the target device is a GPU. Decoding runs either

* ``cpu``: in the workers (PIL: decode, resize the shorter side, centre crop) to uint8
  (N, C, H, W); or
* ``gpu``: the workers only read the files' bytes, and the batch's JPEGs are decoded in one
  call on the device (``torchvision.io.decode_jpeg(list, device="cuda")``, nvJPEG), then
  resized and cropped there. Files that are not JPEGs are decoded in the workers, and a JPEG
  that nvJPEG refuses (CMYK, say) falls back to PIL, one image at a time.

``data.decode=auto`` (the default) takes ``gpu`` where CUDA and torchvision's GPU decoder work
(checked once by decoding a tiny JPEG on the device) and ``cpu`` elsewhere; the choice and its
reason are logged and kept (:func:`decode_choice`), so a run can record them. A requested
``gpu`` that cannot run falls back to ``cpu`` with a warning, never an error.

The GPU path resizes with torchvision's antialiased tensor resize, which is close to, not
bit-identical with, PIL's (the CPU path is exactly torchvision's PIL ``Resize`` +
``CenterCrop``).

Training batches follow the in-memory path's order (:class:`oodlab.data.loaders.TrainBatches`:
a generator seeded by (seed, epoch), every ``world_size``-th sample per process), and resume
mid-epoch the same way; evaluation batches are this process's contiguous block of whole
batches, so metrics equal a single process's.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from oodlab._infra.distributed import batch_shard
from oodlab.data.loaders import epoch_order
from oodlab.errors import ConfigError, CorruptDataError

log = logging.getLogger(__name__)

DECODE_MODES = ("auto", "cpu", "gpu")
Batch = tuple[Tensor, Tensor]


def default_workers() -> int:
    return min(8, os.cpu_count() or 1)


@dataclass(frozen=True)
class StreamOptions:
    """How a streaming set is read: ``num_workers`` decoding processes (None: ``min(8, CPU
    count)``; 0: in the main process), ``decode`` (auto, cpu, gpu) and how many batches each
    worker prepares ahead."""

    num_workers: int | None = None
    decode: str = "auto"
    prefetch_factor: int = 4

    def __post_init__(self) -> None:
        if self.decode not in DECODE_MODES:
            raise ConfigError("data.decode", self.decode, f"one of {', '.join(DECODE_MODES)}")
        if self.num_workers is not None and self.num_workers < 0:
            raise ConfigError("data.num_workers", self.num_workers, ">= 0, or null (auto)")

    @property
    def workers(self) -> int:
        return default_workers() if self.num_workers is None else int(self.num_workers)


# -- the choice of decoder ----------------------------------------------------------------
_GPU_DECODER: dict[str, str] = {}  # device -> "" (works) or the reason it does not


def _tiny_jpeg() -> Tensor:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (120, 30, 200)).save(buffer, format="JPEG")
    return torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)


def gpu_decoder_problem(device: torch.device) -> str:
    """Why JPEGs cannot be decoded on ``device`` ("" when they can), checked once."""
    if device.type != "cuda":
        return f"the device is {device.type}, not CUDA"
    if not torch.cuda.is_available():
        return "CUDA is not available"
    key = str(device)
    if key not in _GPU_DECODER:
        try:
            from torchvision.io import decode_jpeg

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                decode_jpeg([_tiny_jpeg()], device=device)
            _GPU_DECODER[key] = ""
        except Exception as exc:  # no nvJPEG in this torchvision build, or a driver problem
            _GPU_DECODER[key] = (
                f"torchvision's GPU JPEG decoder failed ({type(exc).__name__}: {exc})"
            )
    return _GPU_DECODER[key]


@dataclass(frozen=True)
class DecodeChoice:
    requested: str
    used: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"requested": self.requested, "used": self.used, "reason": self.reason}


_LOGGED: set[DecodeChoice] = set()


def decode_choice(requested: str, device: torch.device | None = None) -> DecodeChoice:
    """cpu or gpu decoding for ``device`` (None: the current CUDA device where there is one),
    logged once per distinct choice."""
    if requested not in DECODE_MODES:
        raise ConfigError("data.decode", requested, f"one of {', '.join(DECODE_MODES)}")
    if device is None:
        device = current_cuda() or torch.device("cpu")
    if requested == "cpu":
        choice = DecodeChoice(requested, "cpu", "data.decode=cpu")
    else:
        problem = gpu_decoder_problem(device)
        if not problem:
            choice = DecodeChoice(requested, "gpu", f"nvJPEG on {device}")
        else:
            choice = DecodeChoice(requested, "cpu", problem)
            if requested == "gpu" and choice not in _LOGGED:
                log.warning("data.decode=gpu is not possible (%s): decoding on the CPU", problem)
    if choice not in _LOGGED:
        _LOGGED.add(choice)
        log.info("image decoding: %s (%s; data.decode=%s)", choice.used, choice.reason, requested)
    return choice


def current_cuda() -> torch.device | None:
    if not torch.cuda.is_available():
        return None
    return torch.device("cuda", torch.cuda.current_device())


# -- decoding on the device ---------------------------------------------------------------
def resize_crop_tensor(image: Tensor, preprocessing: Any) -> Tensor:
    """uint8 (C, H, W) on any device -> (C, crop, crop): the shorter side to ``resize``
    (sizes as torchvision computes them), then the centre crop."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    from oodlab.data.imaging import crop_box, resized_size

    height, width = image.shape[-2:]
    new_w, new_h = resized_size(int(width), int(height), preprocessing.resize)
    if (new_h, new_w) != (height, width):
        image = TF.resize(
            image,
            [new_h, new_w],
            interpolation=InterpolationMode(preprocessing.interpolation),
            antialias=True,
        )
    left, top, right, bottom = crop_box(new_w, new_h, preprocessing.crop)
    return image[..., top:bottom, left:right]


def decode_on_device(
    items: Sequence[Tensor],
    kinds: Tensor,
    preprocessing: Any,
    channels: int,
    device: torch.device,
) -> Tensor:
    """A batch from the workers (JPEG bytes, kind 1, or decoded images, kind 0) -> uint8
    (N, C, crop, crop) on ``device``; JPEGs are decoded in one batched call."""
    from torchvision.io import ImageReadMode, decode_jpeg

    from oodlab.data.imaging import decode_image

    mode = ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB
    out: list[Tensor | None] = [None] * len(items)
    jpegs = [i for i, kind in enumerate(kinds.tolist()) if kind == 1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision 0.29 deprecates its decoders for TorchCodec
        try:
            decoded = decode_jpeg([items[i] for i in jpegs], mode=mode, device=device)
        except RuntimeError:  # one bad image fails the whole call: decode them one by one
            decoded = []
            for i in jpegs:
                try:
                    decoded.append(decode_jpeg(items[i], mode=mode, device=device))
                except RuntimeError:  # e.g. CMYK, which nvJPEG does not take: PIL does
                    image = decode_image(items[i].numpy().tobytes(), preprocessing, channels)
                    decoded.append(image.to(device))
    for i, image in zip(jpegs, decoded, strict=True):
        out[i] = resize_crop_tensor(image, preprocessing)
    for i, item in enumerate(items):
        if out[i] is None:
            out[i] = item.to(device, non_blocking=True)
    return torch.stack(out)  # type: ignore[arg-type]


# -- the worker side ----------------------------------------------------------------------
class _Items(Dataset):
    """The dataset as the workers read it: (data, label, kind, error) per image."""

    def __init__(self, dataset: Any, encoded: bool):
        self.dataset, self.encoded = dataset, encoded

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, int, int, str]:
        return self.dataset.item(index, self.encoded)


def collate(items: list[tuple[Tensor, int, int, str]]) -> tuple[Any, Tensor, Tensor, str]:
    data, labels, kinds, errors = zip(*items, strict=True)
    error = next((e for e in errors if e), "")
    kind = torch.tensor(kinds, dtype=torch.uint8)
    images: Any = torch.stack(data) if not bool(kind.any()) else list(data)
    return images, torch.tensor(labels, dtype=torch.long), kind, error


class _Rows(Sampler[int]):
    def __init__(self, rows: Sequence[int] | range):
        self.rows = rows

    def __iter__(self) -> Iterator[int]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


class _Stream:
    """A DataLoader of decoding workers over ``dataset`` (an ImageListDataset), yielding
    (uint8 images, labels): on the CPU (pinned for a GPU), or decoded on the GPU."""

    #: Lightning reads ``sampler`` (set_epoch) and ``batch_sampler`` of what it iterates
    batch_sampler = None

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        sampler: Sampler[int],
        *,
        drop_last: bool = False,
        device: torch.device | None = None,
        persistent: bool = False,
    ):
        self.dataset, self.batch_size = dataset, batch_size
        self.sampler = sampler
        self.drop_last = drop_last
        self.device = device if device is not None else current_cuda()
        self.persistent = persistent
        options = dataset.options
        self.choice = decode_choice(options.decode, self.device or torch.device("cpu"))
        self._loader: DataLoader | None = None

    def loader(self) -> DataLoader:
        if self._loader is None:
            options = self.dataset.options
            workers = options.workers
            cuda = self.device is not None and self.device.type == "cuda"
            self._loader = DataLoader(
                _Items(self.dataset, encoded=self.choice.used == "gpu"),
                batch_size=self.batch_size,
                sampler=self.sampler,
                drop_last=self.drop_last,
                num_workers=workers,
                collate_fn=collate,
                pin_memory=cuda,
                persistent_workers=self.persistent and workers > 0,
                prefetch_factor=options.prefetch_factor if workers > 0 else None,
            )
        return self._loader

    def batches(self) -> Iterator[Batch]:
        for images, labels, kinds, error in self.loader():
            if error:
                raise self._error(error)
            if isinstance(images, list):
                assert self.device is not None
                images = decode_on_device(
                    images, kinds, self.dataset.preprocessing, self.dataset.channels, self.device
                )
                labels = labels.to(self.device, non_blocking=True)
            yield images, labels

    def _error(self, error: str) -> Exception:
        kind, _, detail = error.partition("|")
        if kind == "missing":
            return self.dataset.missing(detail)
        return CorruptDataError(detail)


class StreamTrainBatches(_Stream):
    """Shuffled training batches, in :class:`~oodlab.data.loaders.TrainBatches`' order, with
    its mid-epoch resume (``mark_consumed``, ``state_dict``)."""

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        *,
        seed: int = 0,
        epoch: int = 0,
        world_size: int = 1,
        rank: int = 0,
        drop_last: bool = True,
        device: torch.device | None = None,
    ):
        per_rank = len(dataset) // world_size
        drop = drop_last and per_rank > batch_size
        order = EpochOrder(len(dataset), batch_size, seed, epoch, world_size, rank)
        super().__init__(dataset, batch_size, order, drop_last=drop, device=device, persistent=True)
        self.order = order
        self.per_rank = per_rank
        self._consumed = 0

    def __len__(self) -> int:
        full, rest = divmod(self.per_rank, self.batch_size)
        return full if self.drop_last or rest == 0 else full + 1

    def __iter__(self) -> Iterator[Batch]:
        self._consumed = self.order.skip
        yield from self.batches()
        self.order.skip = 0

    def mark_consumed(self, batches: int) -> None:
        self._consumed = batches

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.order.epoch, "batches": self._consumed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.order.set_epoch(state["epoch"])
        self.order.skip = int(state["batches"])


class EpochOrder(Sampler[int]):
    """The sample order of one epoch (Lightning calls ``set_epoch``), skipping the batches a
    resumed run has already trained on."""

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int, world_size: int, rank: int):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.epoch, self.world_size, self.rank = epoch, world_size, rank
        self.per_rank = n // world_size
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def indices(self, epoch: int) -> Tensor:
        return epoch_order(self.n, self.seed, epoch, self.world_size, self.rank)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices(self.epoch)[self.skip * self.batch_size :].tolist())

    def __len__(self) -> int:
        return max(0, self.per_rank - self.skip * self.batch_size)


class StreamEvalBatches(_Stream):
    """An evaluation set in order: the batches ``indices`` (default: this process's block of
    whole batches) of ``batch_size`` images."""

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        indices: range | None = None,
        *,
        world_size: int = 1,
        rank: int = 0,
        device: torch.device | None = None,
        persistent: bool = False,
    ):
        n_batches = -(-len(dataset) // batch_size)
        self.indices = indices if indices is not None else batch_shard(n_batches, world_size, rank)
        stop = min(len(dataset), self.indices.stop * batch_size)
        rows = range(self.indices.start * batch_size, max(stop, self.indices.start * batch_size))
        super().__init__(dataset, batch_size, _Rows(rows), device=device, persistent=persistent)

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[Batch]:
        return self.batches()
