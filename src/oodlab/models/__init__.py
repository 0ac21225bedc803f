"""Backbones. Importing this package registers oodlab's architectures in timm's registry,
so ``timm.create_model(name)`` works for them exactly as for timm's own models; timm's registry
is the only one (``model.backbone`` takes any name it holds)."""

from oodlab.models import densenet as _densenet  # noqa: F401  (registers densenet_bc100)
from oodlab.models import resnet_cifar as _resnet_cifar  # noqa: F401  (registers resnet*_cifar)
from oodlab.models import small_cnn as _small_cnn  # noqa: F401  (registers small_cnn)
from oodlab.models import wrn as _wrn  # noqa: F401  (registers wrn40_2)
from oodlab.models._base import register_backbone
from oodlab.models.classifier import (
    OODClassifier,
    create_backbone,
    is_oodlab_model,
    oodlab_model_names,
)

__all__ = [
    "OODClassifier",
    "create_backbone",
    "is_oodlab_model",
    "oodlab_model_names",
    "register_backbone",
]
