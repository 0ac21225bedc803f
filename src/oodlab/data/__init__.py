"""Datasets as uint8 tensors: in-distribution SplitData, OOD sets, and their sources.

In-distribution: MNIST-5k (offline), CIFAR-10/100 and SVHN (torchvision), or any image folder.
OOD sets: offline ones (crops, glyphs, noise, MNIST-5k RGB), torchvision ones (SVHN, CIFAR,
MNIST, DTD, Places365), ODIN's archives (LSUN, iSUN, TinyImageNet), OpenOOD's image lists, or
any folder of images. See the README's Data section.

Names load lazily: importing the package (as every run does for the data module) does not pull
in torchvision unless a torchvision-backed dataset is used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CorruptDataError": "oodlab.data.imaging",
    "ImageTensors": "oodlab.data.types",
    "SplitData": "oodlab.data.types",
    "folder_ood_set": "oodlab.data.folder",
    "load_image_folder": "oodlab.data.folder",
    "load_torchvision_id": "oodlab.data.torchvision_sets",
    "mnist5k_ood_set": "oodlab.data.archive_sets",
    "odin_ood_set": "oodlab.data.archive_sets",
    "openood_ood_set": "oodlab.data.archive_sets",
    "torchvision_ood_set": "oodlab.data.torchvision_sets",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'oodlab.data' has no attribute {name!r}")
