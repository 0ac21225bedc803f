"""Scores built from gradients: ODIN (input gradient) and GradNorm (head-parameter gradient)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from oodlab.scores.base import (
    HParam,
    Outputs,
    Score,
    non_negative_float,
    positive_float,
    register_score,
)


@register_score
class ODIN(Score):
    """Temperature-scaled MSP of an input nudged towards higher confidence (Liang et al.).

    As in the official ODIN code (facebookresearch/odin) and the LogitNorm repository
    (common/score_calculation.py), with ``y^ = argmax f(x)`` and ``L = CE(f(x) / T, y^)``:

        x~ = x - epsilon * s / std,    s = +1 where dL/dx >= 0, else -1,
        score = max_j softmax(f(x~) / T)_j.

    ``x`` is the normalised network input and ``std`` the per-channel normalisation std, so the
    step is ``epsilon`` in [0, 1] pixel units. A zero gradient counts as +1 (the official
    ``torch.ge(grad, 0)``), not 0 as ``torch.sign`` would give. No clipping to the pixel range.
    """

    name = "odin"
    paper = "Liang et al., ICLR 2018"
    needs_model = True
    # published defaults: T = 1000, epsilon = 0.0014 (ODIN paper, CIFAR-10 DenseNet)
    spec: ClassVar[dict[str, HParam]] = {
        "temperature": HParam(1000.0, (1.0, 10.0, 100.0, 1000.0), positive_float),
        "epsilon": HParam(0.0014, (0.0, 0.0005, 0.001, 0.002, 0.005), non_negative_float),
    }

    @classmethod
    def score_inputs_grid(
        cls, model: nn.Module, images: Tensor, input_std: Tensor, settings: list[dict[str, Any]]
    ) -> list[Tensor]:
        settings = [cls(**s).hparams() for s in settings]
        results: list[Tensor | None] = [None] * len(settings)
        std = input_std.to(images.device, images.dtype)
        temperatures = list(dict.fromkeys(s["temperature"] for s in settings))
        clean_logits: Tensor | None = None
        # one input gradient per temperature, shared by all its epsilons
        for t in temperatures:
            mine = [i for i, s in enumerate(settings) if s["temperature"] == t]
            step = None
            if any(settings[i]["epsilon"] > 0 for i in mine):
                with torch.enable_grad():
                    x = images.detach().requires_grad_(True)
                    logits = model(x).float()
                    # summed, not averaged: samples are independent in eval mode and only the
                    # sign is used
                    loss = F.cross_entropy(logits / t, logits.argmax(dim=1), reduction="sum")
                    (input_grad,) = torch.autograd.grad(loss, x)
                clean_logits = logits.detach()
                step = torch.where(input_grad >= 0, 1.0, -1.0).to(images.dtype) / std
            for i in mine:
                eps = settings[i]["epsilon"]
                with torch.no_grad():
                    if eps > 0:
                        assert step is not None
                        out = model(images - eps * step).float()
                    else:
                        if clean_logits is None:
                            clean_logits = model(images).float()
                        out = clean_logits
                    results[i] = (out / t).softmax(dim=1).amax(dim=1)
        return [r for r in results if r is not None]


def linear_layer(head: nn.Module) -> nn.Linear | None:
    """The ``nn.Linear`` a head consists of, or None when the head is anything else."""
    if isinstance(head, nn.Linear):
        return head
    return getattr(head, "linear_layer", None)


def gradnorm_parameters(head: nn.Module) -> dict[str, Tensor]:
    """The head parameters GradNorm differentiates: every one but the biases (the paper and
    official code use the last layer's weight matrix alone)."""
    return {
        k: v.detach() for k, v in head.named_parameters() if not k.split(".")[-1].startswith("bias")
    }


@register_score
class GradNorm(Score):
    """L1 norm of the gradient of ``KL(u || softmax(f / T))`` w.r.t. the head's weights, per sample.

    Huang, Geng and Li, "On the Importance of Gradients for Detecting Distributional Shifts in
    the Wild" (NeurIPS 2021). The official code sums the loss over a whole batch, which mixes
    samples; here every sample gets its own gradient.

    A linear head ``f = W h + b`` (an ``nn.Linear``, or a head whose ``linear_layer`` is one)
    has ``dKL/dW = (p - 1/K) h^T / T`` with ``p = softmax(f/T)``,
    so the score is ``||p - 1/K||_1 * ||h||_1 / T``, read from cached features and logits. Any
    other head (IsoMax, IsoMax+, DisMax) is differentiated per sample with ``torch.func``
    (vmap over ``grad``) w.r.t. all of its parameters except biases. The official code uses
    all-ones targets, ``K`` times the KL gradient: the same ranking and metrics.
    Both run on the cached penultimate features; the backbone is not run again.
    """

    name = "gradnorm"
    paper = "Huang et al., NeurIPS 2021"
    needs_features = True
    needs_head = True
    spec: ClassVar[dict[str, HParam]] = {"temperature": HParam(1.0, (1.0,), positive_float)}
    chunk_size = 256

    def fit(self, train: Outputs | None, model: nn.Module) -> None:
        # nn.Module.__getattr__ is typed Tensor | Module; the head is a module
        self.head: nn.Module = model.head  # type: ignore[assignment]

    def score(self, outputs: Outputs) -> Tensor:
        t = self._hparams["temperature"]
        if linear_layer(self.head) is not None:
            return self._linear(outputs, t)
        return self._autograd(outputs.features, t)

    @staticmethod
    def _linear(outputs: Outputs, t: float, chunk: int = 8192) -> Tensor:
        scores = []
        for i in range(0, len(outputs.logits), chunk):
            logits = outputs.logits[i : i + chunk].double()
            h = outputs.features[i : i + chunk].double()
            p = (logits / t).softmax(dim=1)
            k = logits.shape[1]
            scores.append(((p - 1.0 / k).abs().sum(dim=1) * h.abs().sum(dim=1) / t).float())
        return torch.cat(scores) if scores else outputs.logits.new_zeros(0).float()

    def _autograd(self, features: Tensor, t: float) -> Tensor:
        return per_sample_gradnorm(self.head, features, t, self.chunk_size)


def per_sample_gradnorm(
    head: nn.Module, features: Tensor, temperature: float, chunk_size: int = 256
) -> Tensor:
    """``sum |dKL(u || softmax(head(h)/T))/dtheta|`` for each row ``h``, by autograd
    (torch.func)."""
    params = gradnorm_parameters(head)
    device = next(iter(params.values())).device
    buffers = dict(head.named_buffers())

    def kl_to_uniform(theta: dict[str, Tensor], h: Tensor) -> Tensor:
        logits = functional_call(head, ({**theta}, buffers), (h.unsqueeze(0),)).squeeze(0).float()
        log_p = (logits / temperature).log_softmax(dim=0)
        return -log_p.mean() - torch.log(torch.tensor(float(logits.numel()), device=h.device))

    per_sample = vmap(grad(kl_to_uniform), in_dims=(None, 0), chunk_size=chunk_size)
    was_training = head.training
    head.eval()
    norms = []
    for i in range(0, len(features), 4 * chunk_size):
        grads = per_sample(params, features[i : i + 4 * chunk_size].to(device).float())
        norms.append(sum(g.abs().flatten(1).sum(dim=1) for g in grads.values()).cpu())
    head.train(was_training)
    return torch.cat(norms) if norms else features.new_zeros(0)
