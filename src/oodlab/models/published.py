"""Published weights with their own preprocessing: torchvision's weight enums
(``arch=torchvision:resnet50 weights=IMAGENET1K_V1``) and timm's pretrained models
(``arch=vit_base_patch16_224.augreg_in21k_ft_in1k weights=pretrained``).

Each comes with the transforms it was trained and evaluated with (resize, centre crop,
interpolation, mean, std): :func:`published_weights` returns them as a
:class:`~oodlab.data.preprocessing.Preprocessing`, which the data pipeline applies and
results.json records. Files are read from torch's hub cache or the Hugging Face cache first;
offline, a missing file is one line naming the URL and the folder it goes in.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from oodlab.data.preprocessing import Preprocessing
from oodlab.errors import ConfigError, MissingWeightsError, UnknownNameError
from oodlab.models.pretrained import hub_offline, pretrained_file, reachable, read_state_dict

#: ``weights=`` value that asks for timm's published weights of ``arch``
TIMM_PRETRAINED = "pretrained"


@dataclass(frozen=True)
class PublishedWeights:
    """Where the weights come from, how many classes they predict, and their preprocessing."""

    arch: str
    name: str
    num_classes: int
    preprocessing: Preprocessing


def is_published(arch: str, weights: str | None) -> bool:
    """Whether ``weights`` names published weights (an enum name or ``pretrained``), not a
    file."""
    if not weights:
        return False
    if arch.startswith("torchvision:"):
        return not Path(weights).expanduser().exists() and weights.replace("_", "").isalnum()
    return weights == TIMM_PRETRAINED


def published_weights(arch: str, weights: str) -> PublishedWeights:
    """What ``arch`` with ``weights`` needs, without loading anything heavy."""
    if arch.startswith("torchvision:"):
        enum = torchvision_enum(arch.split(":", 1)[1], weights)
        transforms = enum.transforms()
        return PublishedWeights(
            arch=arch,
            name=f"{type(enum).__name__}.{enum.name}",
            num_classes=len(enum.meta["categories"]),
            preprocessing=Preprocessing(
                resize=int(transforms.resize_size[0]),
                crop=int(transforms.crop_size[0]),
                interpolation=transforms.interpolation.value,
                mean=tuple(transforms.mean),
                std=tuple(transforms.std),
                source=f"torchvision:{type(enum).__name__}.{enum.name}",
            ),
        )
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(arch)
    if cfg is None:
        raise ConfigError("weights", weights, f"a file: timm publishes no weights for {arch}")
    crop = int(cfg.input_size[-1])
    return PublishedWeights(
        arch=arch,
        name=f"timm:{arch}",
        num_classes=int(cfg.num_classes or 0),
        preprocessing=Preprocessing(
            # timm's eval transform: resize the shorter side to crop / crop_pct, centre crop
            resize=math.floor(crop / (cfg.crop_pct or 1.0)),
            crop=crop,
            interpolation=cfg.interpolation or "bicubic",
            mean=tuple(cfg.mean),
            std=tuple(cfg.std),
            source=f"timm:{arch}",
        ),
    )


def torchvision_enum(name: str, weights: str):  # -> torchvision.models.WeightsEnum
    import torchvision

    if name not in torchvision.models.list_models():
        raise UnknownNameError("torchvision model", name, torchvision.models.list_models())
    choices = torchvision.models.get_model_weights(name)
    try:
        return choices[weights] if weights != "DEFAULT" else choices.DEFAULT
    except KeyError:
        raise UnknownNameError(
            f"torchvision weights of {name}", weights, [w.name for w in choices] + ["DEFAULT"]
        ) from None


def load_published(published: PublishedWeights) -> nn.Module:
    """The model with its published weights, in eval mode."""
    if published.arch.startswith("torchvision:"):
        import torchvision

        name = published.arch.split(":", 1)[1]
        enum = torchvision_enum(name, published.name.rsplit(".", 1)[1])
        model = torchvision.models.get_model(name, weights=None)
        model.load_state_dict(read_state_dict(torchvision_file(enum.url, published.name)))
        return model.eval()
    import timm

    model = timm.create_model(published.arch, pretrained=False)
    model.load_state_dict(read_state_dict(pretrained_file(published.arch)))
    return model.eval()


def torchvision_file(url: str, name: str) -> str:
    """torchvision's weights file in torch's hub cache, downloaded when online."""
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    if cached.is_file():
        return str(cached)
    if hub_offline() or not reachable(url):
        raise MissingWeightsError(
            name,
            f"offline, and {cached} is not there",
            hub_offline=True,
            how_to_get=f"Download {url} to {cached}, or pass the file as weights=PATH.",
        )
    cached.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(cached), progress=False)
    except Exception as exc:
        raise MissingWeightsError(
            name,
            f"downloading {url} failed ({type(exc).__name__})",
            hub_offline=True,
            how_to_get=f"Download it to {cached} by hand, or pass the file as weights=PATH.",
        ) from None
    return str(cached)
