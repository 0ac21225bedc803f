"""The in-memory representation every dataset is reduced to (and, for sets too large for
memory such as ImageNet, the interface their streaming Datasets share with it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from oodlab.data.preprocessing import Preprocessing


class ImageSet(Protocol):
    """What a split of an ID dataset is: :class:`ImageTensors` (in memory) or a streaming
    Dataset (oodlab.data.sources.image_list.ImageListDataset)."""

    @property
    def labels(self) -> Tensor: ...

    @property
    def classes(self) -> tuple[str, ...]: ...

    @property
    def shape(self) -> tuple[int, int, int]: ...

    def __len__(self) -> int: ...


@dataclass(frozen=True)
class ImageTensors:
    """Images held as one uint8 tensor, so batches are sliced, never decoded per sample.

    ``images`` is uint8 (N, C, H, W). ``labels`` is int64 (N,); OOD sets use -1.
    """

    images: Tensor
    labels: Tensor
    classes: tuple[str, ...] = ()

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise TypeError(
                "images must be uint8 (N, C, H, W), "
                f"got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"labels shape {tuple(self.labels.shape)} does not match "
                f"{self.images.shape[0]} images"
            )

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def subset(self, index: Tensor) -> ImageTensors:
        return ImageTensors(self.images[index], self.labels[index], self.classes)

    @classmethod
    def unlabeled(cls, images: Tensor) -> ImageTensors:
        return cls(images, torch.full((images.shape[0],), -1, dtype=torch.long))


@dataclass(frozen=True)
class SplitData:
    """An in-distribution dataset, split three ways. The splits are :class:`ImageTensors`,
    or streaming Datasets for image lists (then ``preprocessing`` says how they are decoded)."""

    name: str
    train: ImageSet
    val: ImageSet
    test: ImageSet
    mean: tuple[float, ...]
    std: tuple[float, ...]
    #: ``held_out`` (not trained on) or ``train`` (drawn from the training images)
    val_from: str = "held_out"
    #: how streaming splits are resized and cropped (None: in-memory tensors)
    preprocessing: Preprocessing | None = None

    @property
    def streaming(self) -> bool:
        return not isinstance(self.train, ImageTensors)

    @property
    def num_classes(self) -> int:
        return len(self.train.classes) or int(self.train.labels.max()) + 1

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.train.shape
