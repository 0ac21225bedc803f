"""Training throughput of oodlab's Lightning task against a plain PyTorch loop on the same work.

Same model, batch size, optimizer (SGD, momentum 0.9, Nesterov off, weight decay 5e-4, the
LogitNorm paper's), loss (LogitNorm, tau 0.04), precision and augmentation (crop padding 4 and
flip), on synthetic CIFAR-shaped uint8 data (no dataset needed). Steps after ``--warmup`` are
timed; images per second and their ratio (target: oodlab >= 0.95 x plain) are printed. On a GPU
it also prints the achieved TFLOP/s (3 x the forward FLOPs per image, counted by torch's
FlopCounterMode) and the projected wall time of the 200-epoch WRN-40-2 protocol (50,000 images
per epoch).

    python benchmarks/train_throughput.py                       # WRN-40-2 on a GPU, bf16
    python benchmarks/train_throughput.py --model small_cnn --steps 60 --device cpu --precision 32
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import lightning as L
import timm
import torch

sys.path.insert(0, str(Path(__file__).parent))
from plain_loop import random_crop

import oodlab.models  # noqa: F401  (registers wrn40_2)
from oodlab.data.loaders import TrainBatches
from oodlab.data.types import ImageTensors
from oodlab.task import OODClassificationTask

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
OPTIMIZER = {
    "_target_": "torch.optim.SGD",
    "lr": 0.1,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "nesterov": False,
}


def synthetic(n: int, seed: int = 0) -> ImageTensors:
    g = torch.Generator().manual_seed(seed)
    return ImageTensors(
        torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
        torch.randint(0, 10, (n,), generator=g),
    )


class StepTimer(L.Callback):
    """Seconds from the start of training batch ``warmup`` to the end of the last one."""

    def __init__(self, warmup: int, device: torch.device):
        self.warmup, self.device, self.start, self.end = warmup, device, 0.0, 0.0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            self._sync()
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module) -> None:
        self._sync()
        self.end = time.perf_counter()


def oodlab_steps(args: argparse.Namespace, data: ImageTensors) -> float:
    torch.manual_seed(0)
    task = OODClassificationTask(
        backbone=args.model, loss={"_target_": "oodlab.losses.LogitNormHead", "tau": 0.04},
        num_classes=10, in_chans=3, mean=list(CIFAR_MEAN), std=list(CIFAR_STD),
        augment={"crop_padding": 4, "hflip": True}, optimizer=OPTIMIZER, scheduler=None,
        channels_last=args.channels_last, compile=args.compile,
    )  # fmt: skip
    device = torch.device(args.device)
    timer = StepTimer(args.warmup, device)
    trainer = L.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, precision=args.precision,
        max_steps=args.steps, limit_val_batches=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[timer],
    )  # fmt: skip
    loader = TrainBatches(
        ImageTensors(data.images.to(device), data.labels.to(device)), args.batch_size
    )
    trainer.fit(task, train_dataloaders=loader)
    return timer.end - timer.start


def plain_steps(args: argparse.Namespace, data: ImageTensors) -> float:
    """The same steps written out by hand; flip and crop as oodlab's BatchAugment does."""
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = timm.create_model(args.model, num_classes=10, in_chans=3).to(device)
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if args.compile else model
    opt_cfg = {k: v for k, v in OPTIMIZER.items() if k != "_target_"}
    optimizer = torch.optim.SGD(model.parameters(), **opt_cfg)
    images, labels = data.images.to(device), data.labels.to(device)
    mean = torch.tensor(CIFAR_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD, device=device).view(1, 3, 1, 1)
    bf16 = args.precision == "bf16-mixed"
    start = 0.0
    for step in range(args.steps):
        if step == args.warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        index = torch.randint(0, len(labels), (args.batch_size,), device=device)
        x = random_crop(images[index].float().div_(255.0), 4)
        flip = torch.rand(len(x), device=device) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x).sub(mean).div(std)
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = forward(x)
        f = logits.float()
        loss = torch.nn.functional.cross_entropy(
            f / ((f.norm(dim=1, keepdim=True) + 1e-7) * 0.04), labels[index]
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def forward_flops(model_name: str) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    model = timm.create_model(model_name, num_classes=10, in_chans=3).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="wrn40_2")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--precision",
        default=None,
        help="Lightning precision (default: bf16-mixed on a GPU, 32 on the CPU)",
    )
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument(
        "--repeats", type=int, default=2, help="alternating runs of each; the best is kept"
    )
    args = parser.parse_args()
    args.precision = args.precision or ("bf16-mixed" if args.device.startswith("cuda") else "32")
    data = synthetic(max(args.batch_size * 40, 5000))
    timed = args.steps - args.warmup
    best = {"plain": float("inf"), "oodlab": float("inf")}
    for _ in range(args.repeats):
        best["plain"] = min(best["plain"], plain_steps(args, data))
        best["oodlab"] = min(best["oodlab"], oodlab_steps(args, data))
    rate = {k: timed * args.batch_size / v for k, v in best.items()}
    print(
        f"{args.model}, batch {args.batch_size}, {args.precision}, {args.device}, "
        f"channels_last={args.channels_last}, compile={args.compile}"
    )
    for name in ("plain", "oodlab"):
        print(f"  {name:<7} {rate[name]:10.1f} images/s")
    print(f"  ratio oodlab / plain: {rate['oodlab'] / rate['plain']:.3f}  (target >= 0.95)")
    if args.device.startswith("cuda"):
        flops = 3 * forward_flops(args.model)
        print(
            f"  achieved: {rate['oodlab'] * flops / 1e12:.1f} TFLOP/s "
            f"({flops / 1e9:.2f} GFLOP per training image)"
        )
        print(
            f"  200 epochs x 50,000 images: {200 * 50_000 / rate['oodlab'] / 60:.1f} min projected"
        )


if __name__ == "__main__":
    main()
