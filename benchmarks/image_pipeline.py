"""Images per second through decode + resize + centre crop: oodlab's streaming image-list
pipeline against a plain torchvision ``ImageFolder`` + ``DataLoader`` with the same workers and
the same transforms (``Resize(256)``, ``CenterCrop(224)``, to uint8), in the same run.

The images are generated: ImageNet-sized JPEGs (about 500x375, quality 90) cut at random from
scikit-learn's sample photos, randomly resized, in an ImageFolder layout under ``--root``.

    python benchmarks/image_pipeline.py --images 2000 --workers 2
    python benchmarks/image_pipeline.py --decode gpu      # on a CUDA machine: nvJPEG too
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def generate(root: Path, n: int, seed: int = 0) -> Path:
    """``n`` JPEGs of about 500x375 in ``root/<class>/`` (10 classes), made once."""
    from sklearn.datasets import load_sample_images

    marker = root / f".generated-{n}"
    if marker.exists():
        return root
    photos = [Image.fromarray(p) for p in load_sample_images().images]  # 640x427 each
    rng = np.random.default_rng(seed)
    for i in range(n):
        photo = photos[i % len(photos)]
        w, h = int(rng.integers(300, 640)), int(rng.integers(220, 427))
        left, top = int(rng.integers(0, 640 - w + 1)), int(rng.integers(0, 427 - h + 1))
        size = (int(rng.integers(440, 560)), int(rng.integers(330, 420)))
        if rng.random() < 0.3:
            size = size[::-1]  # some portrait images
        image = photo.crop((left, top, left + w, top + h)).resize(size, Image.Resampling.BILINEAR)
        folder = root / f"class_{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{i:05d}.jpg", quality=90)
    marker.touch()
    return root


def image_list(root: Path) -> Path:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    lines = [
        f"{c}/{f.name} {k}" for k, c in enumerate(classes) for f in sorted((root / c).iterdir())
    ]
    path = root.parent / f"{root.name}.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def rate(batches, n: int) -> float:
    start = time.perf_counter()
    seen = 0
    for images, _ in batches:
        seen += len(images)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    assert seen == n, (seen, n)
    return n / (time.perf_counter() - start)


def torchvision_loader(root: Path, workers: int, batch_size: int):
    from torch.utils.data import DataLoader
    from torchvision import datasets
    from torchvision import transforms as T

    transform = T.Compose([T.Resize(256), T.CenterCrop(224), T.PILToTensor()])
    folder = datasets.ImageFolder(str(root), transform=transform)
    return DataLoader(
        folder,
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        prefetch_factor=4 if workers else None,
    )


def oodlab_batches(list_path: Path, root: Path, workers: int, batch_size: int, decode: str):
    from oodlab.data.preprocessing import IMAGENET
    from oodlab.data.sources.image_list import list_dataset
    from oodlab.data.streaming import StreamEvalBatches, StreamOptions

    data = list_dataset(
        list_path, root, IMAGENET, options=StreamOptions(num_workers=workers, decode=decode)
    )
    return StreamEvalBatches(data, batch_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="/tmp/oodlab-bench-jpegs/images")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--decode", default="cpu", choices=["cpu", "gpu", "auto"])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    root = generate(Path(args.root), args.images)
    list_path = image_list(root)
    sizes = [Image.open(p).size for p in sorted(root.rglob("*.jpg"))[:200]]
    mean_size = np.mean(sizes, axis=0).round().astype(int).tolist()
    results: dict[str, list[float]] = {"torchvision": [], "oodlab": []}
    for _ in range(args.repeats):  # interleaved, so both see the same page cache and load
        tv = torchvision_loader(root, args.workers, args.batch_size)
        results["torchvision"].append(rate(tv, args.images))
        ours = oodlab_batches(list_path, root, args.workers, args.batch_size, args.decode)
        results["oodlab"].append(rate(ours, args.images))
    best = {k: max(v) for k, v in results.items()}
    report = {
        "images": args.images,
        "mean_size_wxh": mean_size,
        "workers": args.workers,
        "batch_size": args.batch_size,
        "decode": ours.choice.to_json(),
        "images_per_s": {k: round(v, 1) for k, v in best.items()},
        "runs": {k: [round(x, 1) for x in v] for k, v in results.items()},
        "oodlab_over_torchvision": round(best["oodlab"] / best["torchvision"], 3),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
