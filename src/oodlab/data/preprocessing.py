"""How images become network inputs: resize, centre crop, then (on the device) mean and std.

Pretrained weights come with their own preprocessing (torchvision's ``weights.transforms()``,
timm's ``pretrained_cfg``); evaluating them with any other gives silently worse numbers. A
:class:`Preprocessing` carries it from the weights to the data pipeline, which decodes,
resizes and crops to uint8 (on the CPU workers, or on the GPU), and to the task, which
normalises whole batches on the device. results.json records it (``data.preprocessing``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

#: interpolation names, as torchvision's InterpolationMode values spell them
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")


@dataclass(frozen=True)
class Preprocessing:
    """``resize``: the shorter side after resizing (pixels); ``crop``: the side of the centre
    crop (pixels); ``mean``/``std``: per-channel statistics of [0, 1] pixels, applied on the
    device after the crop."""

    resize: int
    crop: int
    interpolation: str = "bilinear"
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    #: where it came from, e.g. "torchvision:ResNet50_Weights.IMAGENET1K_V1" or "config"
    source: str = "config"

    def __post_init__(self) -> None:
        from oodlab.errors import ConfigError

        # a config gives lists and ints: one canonical form, so equal preprocessings compare
        # (and key caches) equal
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))

        if self.crop < 1 or self.resize < self.crop:
            raise ConfigError(
                "preprocessing", f"resize={self.resize} crop={self.crop}", "1 <= crop <= resize"
            )
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(
                "preprocessing.interpolation", self.interpolation, f"one of {INTERPOLATIONS}"
            )
        if len(self.mean) != len(self.std) or any(s <= 0 for s in self.std):
            raise ConfigError(
                "preprocessing", f"mean={self.mean} std={self.std}", "positive std per channel"
            )

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}

    def key(self) -> str:
        """What tells two preprocessings apart (not where they came from), for cache keys."""
        return f"{self.resize}-{self.crop}-{self.interpolation}-{self.mean}-{self.std}"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Preprocessing:
        return cls(**data)


#: ImageNet's standard evaluation preprocessing (torchvision's ResNet-50 IMAGENET1K_V1)
IMAGENET = Preprocessing(resize=256, crop=224)
