"""OOD sets made on the fly, with no download: crops of the photographs that ship inside
scikit-image and scikit-learn, letters rendered from matplotlib's fonts, and noise.

Every builder takes the in-distribution image shape (C, H, W), a size and a seed, and is
deterministic for a given seed, so every run of a sweep is scored on the same images.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from oodlab.data.imaging import Shape, generated_shape
from oodlab.data.types import ImageTensors
from oodlab.errors import ConfigError, UnknownNameError

# Letters that read as digits (O/0, l/1, Z/2, S/5, b/6, g/9, B/8 ...) are left out, so the
# glyph set is OOD for digit classifiers by construction rather than by accident.
DIGIT_FREE_LETTERS = "ACDEFHJKLMNPRTUVWXYacdefhjkmnprtuvwxy"


def _to_tensor(images: list[Image.Image], channels: int) -> torch.Tensor:
    mode = "L" if channels == 1 else "RGB"
    arr = np.stack([np.asarray(im.convert(mode)) for im in images])
    if channels == 1:
        arr = arr[..., None]
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2)))


@cache
def _skimage_source(name: str) -> np.ndarray:
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        return load_sample_image(f"{name}.jpg")
    import skimage.data

    loader = getattr(skimage.data, name, None)
    if loader is None:
        raise UnknownNameError("image source", name, _SOURCES)
    img = loader()
    if img.dtype == bool:
        img = img.astype(np.uint8) * 255
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    return img


_SOURCES = (
    "brick",
    "grass",
    "gravel",
    "camera",
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "moon",
    "coins",
    "clock",
    "hubble_deep_field",
    "immunohistochemistry",
    "china",
    "flower",
)


def _random_crops(
    sources: Sequence[str], n: int, seed: int, shape: Shape, min_crop: int, max_crop: int
) -> ImageTensors:
    channels, height, width = generated_shape(n, shape)
    if not 4 <= min_crop <= max_crop:
        raise ConfigError("ood.sets.<name>.min_crop", min_crop, f"in [4, max_crop={max_crop}]")
    rng = np.random.default_rng(seed)
    pictures = [Image.fromarray(_skimage_source(s)) for s in sources]
    crops = []
    for _ in range(n):
        pic = pictures[rng.integers(len(pictures))]
        size = int(rng.integers(min_crop, min(max_crop, *pic.size) + 1))
        left = int(rng.integers(0, pic.size[0] - size + 1))
        top = int(rng.integers(0, pic.size[1] - size + 1))
        crop = pic.crop((left, top, left + size, top + size))
        crops.append(crop.resize((width, height), Image.Resampling.BICUBIC, reducing_gap=2.0))
    return ImageTensors.unlabeled(_to_tensor(crops, channels))


def texture_crops(
    *,
    shape: Shape,
    n: int = 1000,
    seed: int = 0,
    sources: Sequence[str] = ("brick", "grass", "gravel"),
    min_crop: int = 24,
    max_crop: int = 160,
) -> ImageTensors:
    """Random square crops of scikit-image's texture photographs."""
    return _random_crops(sources, n, seed, shape, min_crop, max_crop)


def photo_crops(
    *,
    shape: Shape,
    n: int = 1000,
    seed: int = 0,
    sources: Sequence[str] = (
        "camera",
        "astronaut",
        "coffee",
        "chelsea",
        "rocket",
        "china",
        "flower",
    ),
    min_crop: int = 32,
    max_crop: int = 256,
) -> ImageTensors:
    """Random square crops of natural photographs from scikit-image and scikit-learn."""
    return _random_crops(sources, n, seed, shape, min_crop, max_crop)


def _font_files() -> list[Path]:
    import matplotlib

    ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    # The "Display" faces hold only a few glyphs and would render blanks.
    return sorted(p for p in ttf.glob("DejaVu*.ttf") if "Display" not in p.name)


def font_glyphs(
    *,
    shape: Shape,
    n: int = 1000,
    seed: int = 0,
    chars: str = DIGIT_FREE_LETTERS,
    max_rotation: float = 15.0,
) -> ImageTensors:
    """Letters rendered from matplotlib's DejaVu fonts, white on black and centred by mass the
    way MNIST digits are, so they differ from digits in shape and not in framing."""
    channels, height, width = generated_shape(n, shape)
    if not chars:
        raise ConfigError("ood.sets.<name>.chars", chars, "a non-empty string")
    rng = np.random.default_rng(seed)
    fonts = [ImageFont.truetype(str(p), size=64) for p in _font_files()]
    box = max(4, round(min(height, width) * 20 / 28))
    glyphs = []
    for _ in range(n):
        char = chars[rng.integers(len(chars))]
        font = fonts[rng.integers(len(fonts))]
        canvas = Image.new("L", (96, 96), 0)
        ImageDraw.Draw(canvas).text((16, 4), char, fill=255, font=font)
        canvas = canvas.rotate(
            float(rng.uniform(-max_rotation, max_rotation)), Image.Resampling.BILINEAR
        )
        canvas = canvas.crop(canvas.getbbox())
        scale = box / max(canvas.size)
        glyph = canvas.resize(
            (max(1, round(canvas.size[0] * scale)), max(1, round(canvas.size[1] * scale))),
            Image.Resampling.LANCZOS,
        )
        arr = np.asarray(glyph, dtype=np.float64)
        ys, xs = np.indices(arr.shape)
        mass = arr.sum() or 1.0
        cy, cx = (ys * arr).sum() / mass, (xs * arr).sum() / mass
        out = Image.new("L", (width, height), 0)
        top = int(np.clip(round(height / 2 - cy), 0, height - glyph.size[1]))
        left = int(np.clip(round(width / 2 - cx), 0, width - glyph.size[0]))
        out.paste(glyph, (left, top))
        glyphs.append(out)
    return ImageTensors.unlabeled(_to_tensor(glyphs, channels))


def gaussian_noise(
    *, shape: Shape, n: int = 1000, seed: int = 0, mean: float = 0.5, std: float = 0.25
) -> ImageTensors:
    """i.i.d. N(mean, std²) pixels clipped to [0, 1] (the OE/LogitNorm noise: N(0, 0.5²) on
    [-1, 1])."""
    channels, height, width = generated_shape(n, shape)
    if std <= 0:
        raise ConfigError("ood.sets.<name>.std", std, "> 0")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((n, channels, height, width), generator=gen) * std + mean
    return ImageTensors.unlabeled((x.clamp(0, 1) * 255).round().to(torch.uint8))


def uniform_noise(*, shape: Shape, n: int = 1000, seed: int = 0) -> ImageTensors:
    """i.i.d. U[0, 1] pixels."""
    channels, height, width = generated_shape(n, shape)
    gen = torch.Generator().manual_seed(seed)
    return ImageTensors.unlabeled(
        torch.randint(0, 256, (n, channels, height, width), generator=gen, dtype=torch.uint8)
    )
