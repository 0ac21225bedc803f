"""Why the default models score noise as more in-distribution than digits (README: "Noise").

Trains the default experiment with CE and LogitNorm (seed 0, the real command line), then
measures, on ID validation digits and synthetic probes only:

(a) the confidence and logit norm of f(alpha * x) as the input is scaled (Hein et al., CVPR 2019:
    a ReLU network's confidence tends to 1 along alpha * x);
(b) the penultimate-feature and logit norms of every set, with its brightness and local contrast.

Writes benchmarks/figures/noise_cause.png and prints the tables.

    python benchmarks/noise_analysis.py [--runs CE_RUN_DIR LOGITNORM_RUN_DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from oodlab.checkpoint import load_checkpoint
from oodlab.data.sources.mnist5k import load_mnist5k
from oodlab.data.sources.synthetic import (
    font_glyphs,
    gaussian_noise,
    photo_crops,
    texture_crops,
    uniform_noise,
)

REPO = Path(__file__).resolve().parents[1]
ALPHAS = [0.25, 0.5, 1, 2, 4, 8, 16]


def train(loss: str, out: Path) -> Path:
    subprocess.run(
        [sys.executable, "src/train.py", f"loss={loss}", "logger=none", "plots=false",
         f"hydra.run.dir={out}"],
        cwd=REPO, check=True, capture_output=True, env=dict(os.environ),
    )  # fmt: skip
    return out


@torch.no_grad()
def outputs(task, x01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, pooled features) of [0, 1] images, any brightness (no clipping)."""
    x = (x01 - task.normalize.mean) / task.normalize.std
    logits, features = task.model.forward_with_features(x)
    return logits, features


def local_contrast(x: torch.Tensor) -> float:
    return float(
        (
            (x[..., 1:, :] - x[..., :-1, :]).abs().mean()
            + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()
        )
        / 2
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--runs",
        nargs=2,
        type=Path,
        help="run directories of CE and LogitNorm (default: train them)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = args.runs or [train(loss, Path(tmp) / loss) for loss in ("ce", "logitnorm")]
        tasks = {
            name: load_checkpoint(run / "checkpoints" / "last.ckpt").task
            for name, run in zip(("CE", "LogitNorm"), runs)
        }
    data = load_mnist5k(REPO / "data")
    val = data.val.images.float() / 255
    shape = (1, 28, 28)
    sets = {
        "ID test digits": data.test.images,
        "textures": texture_crops(shape=shape, seed=1).images,
        "photos": photo_crops(shape=shape, seed=2).images,
        "glyphs": font_glyphs(shape=shape, seed=3).images,
        "gaussian noise": gaussian_noise(shape=shape, seed=4).images,
        "uniform noise": uniform_noise(shape=shape, seed=5).images,
    }
    sets = {k: v.float() / 255 for k, v in sets.items()}
    sets["flat gray 0.5 (probe)"] = torch.full_like(val, 0.5)

    probe = {}
    print("(a) f(alpha * x) on the 500 ID validation digits: mean MSP / mean logit norm / accuracy")
    for name, task in tasks.items():
        rows = []
        for a in ALPHAS:
            logits, _ = outputs(task, a * val)
            rows.append(
                (
                    float(logits.softmax(1).amax(1).mean()),
                    float(logits.norm(dim=1).mean()),
                    float((logits.argmax(1) == data.val.labels).float().mean()),
                )
            )
        probe[name] = np.array(rows)
        print(
            f"  {name:<10}"
            + "".join(
                f"  a={a:g}: {m:.3f}/{n:.1f}/{acc:.2f}" for a, (m, n, acc) in zip(ALPHAS, rows)
            )
        )

    print(
        "\n(b) per set: brightness, local contrast, then mean feature norm / logit norm per model"
    )
    norms: dict[str, dict[str, tuple[float, float]]] = {}
    for set_name, x in sets.items():
        norms[set_name] = {}
        for name, task in tasks.items():
            logits, features = outputs(task, x)
            norms[set_name][name] = (
                float(features.norm(dim=1).mean()),
                float(logits.norm(dim=1).mean()),
            )
        cells = "  ".join(f"{name} {f:.1f}/{lg:.1f}" for name, (f, lg) in norms[set_name].items())
        print(
            f"  {set_name:<22} mean {float(x.mean()):.3f}  "
            f"contrast {local_contrast(x):.3f}  {cells}"
        )

    fig = Figure(figsize=(11, 3.8), dpi=130, layout="constrained")
    axes = fig.subplots(1, 2)
    for name, rows in probe.items():
        axes[0].plot(ALPHAS, rows[:, 0], marker="o", label=f"{name}: mean MSP")
        axes[0].plot(ALPHAS, rows[:, 2], ls="--", marker=".", label=f"{name}: accuracy")
    axes[0].set_xscale("log", base=2)
    axes[0].set_xlabel("α (input scaled to α·x, ID validation digits)")
    axes[0].set_title("(a) confidence grows with the input scale")
    axes[0].legend(fontsize=7)
    names = list(norms)
    width = 0.38
    for i, model in enumerate(tasks):
        values = [norms[s][model][1] for s in names]
        axes[1].barh(np.arange(len(names)) + (i - 0.5) * width, values, height=width, label=model)
    axes[1].set_yticks(np.arange(len(names)), names, fontsize=8)
    axes[1].invert_yaxis()
    axes[1].set_xlabel("mean ‖logits‖ (higher = more confident)")
    axes[1].set_title("(b) noise has the largest logit norms")
    axes[1].legend(fontsize=7)
    out = REPO / "benchmarks" / "figures" / "noise_cause.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(out)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
