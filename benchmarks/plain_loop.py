"""The baseline the benchmarks compare oodlab with: a plain PyTorch training loop.

No Lightning, no Hydra, no logger: the network, the optimizer and schedule, on-device batch
augmentation and the loss, written out by hand as a researcher would. It uses the same
model, loss head, batch size, optimizer, schedule, precision and data as the oodlab run it
stands beside, so the difference in time is what oodlab adds.

    python benchmarks/plain_loop.py            # the default experiment's 10 epochs (MNIST-5k)
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch
import torch.nn.functional as F


def random_crop(x: torch.Tensor, padding: int) -> torch.Tensor:
    """Per-sample random crop with zero padding (the same augmentation oodlab applies)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n,), device=x.device)
    dx = torch.randint(0, 2 * padding + 1, (n,), device=x.device)
    rows = torch.arange(h, device=x.device)[None, :] + dy[:, None]
    cols = torch.arange(w, device=x.device)[None, :] + dx[:, None]
    return padded[
        torch.arange(n, device=x.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]
    ].permute(0, 3, 1, 2)


def logitnorm_loss(logits: torch.Tensor, y: torch.Tensor, tau: float) -> torch.Tensor:
    norms = logits.norm(dim=1, keepdim=True) + 1e-7
    return F.cross_entropy(logits / (norms * tau), y)


def train(
    images: torch.Tensor,
    labels: torch.Tensor,
    model: torch.nn.Module,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    padding: int,
    mean: float | tuple[float, ...],
    std: float | tuple[float, ...],
    tau: float | None = 0.04,
    precision: str = "32",
    device: str = "cpu",
    channels_last: bool = False,
) -> float:
    """Train ``model`` (logits out) and return the seconds it took."""
    model.to(device).train()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    images, labels = images.to(device), labels.to(device)
    mean_t = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=device).view(1, -1, 1, 1)
    steps_per_epoch = len(labels) // batch_size
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    autocast = (
        torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
        if precision == "bf16-mixed"
        else contextlib.nullcontext()
    )
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(labels), device=device)
        for b in range(steps_per_epoch):
            index = order[b * batch_size : (b + 1) * batch_size]
            x = images[index].float().div_(255.0)
            x = (random_crop(x, padding) if padding else x).sub(mean_t).div(std_t)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast:
                logits = model(x)
            logits = logits.float()
            loss = (
                F.cross_entropy(logits, labels[index])
                if tau is None
                else logitnorm_loss(logits, labels[index], tau)
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def default_experiment(epochs: int = 10, channels_last: bool = False) -> float:
    """The default run's training (MNIST-5k train split, small_cnn, LogitNorm tau=0.04, AdamW
    3e-3 / 5e-4, cosine per step, batch 128, crop padding 2), as a plain loop."""
    import timm

    import oodlab.models  # noqa: F401  (registers small_cnn)
    from oodlab.data.sources.mnist5k import MNIST_MEAN, MNIST_STD, load_mnist5k

    torch.manual_seed(0)
    data = load_mnist5k("data")
    model = timm.create_model("small_cnn", num_classes=10)
    return train(
        data.train.images, data.train.labels, model, epochs=epochs, batch_size=128, lr=3e-3,
        weight_decay=5e-4, padding=2, mean=MNIST_MEAN, std=MNIST_STD, tau=0.04,
        channels_last=channels_last,
    )  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--channels-last", action="store_true", help="as oodlab trains by default")
    parser.add_argument(
        "--freeze-gc",
        action="store_true",
        help="oodlab's collector settings (oodlab.run.process)",
    )
    args = parser.parse_args()
    if args.freeze_gc:
        import atexit
        import gc

        import timm  # noqa: F401

        import oodlab.models  # noqa: F401

        gc.freeze()  # after the imports: the libraries' objects leave the collector's scans
        atexit.register(gc.freeze)
    print(f"plain loop: {default_experiment(args.epochs, args.channels_last):.2f} s of training")
