"""NNGuide: nearest-neighbour guidance of the energy (Park et al., ICCV 2023)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from oodlab._infra.validate import in_range
from oodlab.errors import ConfigError
from oodlab.scores._posthoc import (
    chunks,
    compute_device,
    compute_dtype,
    energy,
    top_k_similarities,
    train_outputs,
)
from oodlab.scores.base import HParam, Outputs, Score, positive_int, register_score

#: the bank subsample is drawn with this seed, so a run is reproducible
BANK_SEED = 0


def bank_ratio(key: str, value: Any) -> float:
    return in_range(key, value, 0, 1, closed="right", what="a fraction")


def unit_rows(x: Tensor) -> Tensor:
    """Rows divided by their L2 norm (``F.normalize``, eps 1e-12), as the official code."""
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


@register_score
class NNGuide(Score):
    """The energy times its nearest-neighbour guidance: the mean of the ``K`` largest inner
    products between the L2-normalised feature and a bank of confidence-scaled training
    features.

    Park, Jung and Teoh, "Nearest Neighbor Guidance for Out-of-Distribution Detection" (ICCV
    2023); official code roomo7time/nnguide (ood_detectors/nnguide.py, features L2-normalised
    in model_engines/assets.py), OpenOOD v1.5 openood/postprocessors/nnguide_postprocessor.py.
    Bank: a random ``alpha`` fraction of the ID training split, each row ``h^ * E`` with ``h^``
    the normalised feature and ``E = logsumexp(f)`` its energy. Score
    ``= E(x) * mean(top-K of <h^(x), bank>)`` (faiss ``IndexFlatIP`` in both codes).

    * ``K``: 10 by default, the official configs/detector/nnguide.yaml (``knn_k: 10``); grid
      (100,), OpenOOD configs/postprocessors/nnguide.yml (``K_list``; its default is 100 too).
    * ``alpha``: 0.01, the official bank ratio (``bankset_ratio=0.01``) and OpenOOD's; grid
      (0.01,), OpenOOD's ``alpha_list``.

    The bank is ``max(int(alpha N), K)`` training samples (at least ``K``, so every query has
    ``K`` neighbours), drawn with a fixed seed; the official code shuffles without a seed and
    OpenOOD takes the first whole batches of its loader. OpenOOD's normaliser adds 1e-10 to
    every element (``x / ||x|| + 1e-10``); this follows the official ``F.normalize``.
    """

    name = "nnguide"
    paper = "Park et al., ICCV 2023"
    needs_train = True
    needs_features = True
    spec: ClassVar[dict[str, HParam]] = {
        "K": HParam(10, (100,), positive_int),
        "alpha": HParam(0.01, (0.01,), bank_ratio),
    }
    chunk_rows = 1024

    def fit(self, train: Outputs | None, model: nn.Module) -> None:
        train = train_outputs(self, train)
        k, n = self._hparams["K"], len(train.features)
        if k > n:
            raise ConfigError(f"eval.params.{self.name}.K", k, f"at most the {n} training samples")
        size = min(n, max(int(self._hparams["alpha"] * n), k))
        picked = torch.randperm(n, generator=torch.Generator().manual_seed(BANK_SEED))[:size]
        picked = picked.sort().values
        self.device = compute_device(model)
        self.dtype = compute_dtype(self.device)
        features = train.features[picked].double()
        bank = unit_rows(features) * energy(train.logits[picked])[:, None]
        self.bank = bank.to(self.device, self.dtype)

    def score(self, outputs: Outputs) -> Tensor:
        k = self._hparams["K"]
        guidance = []
        for h in chunks(outputs.features, self.chunk_rows):
            query = unit_rows(h).to(self.device, self.dtype)
            top = top_k_similarities(query, self.bank, k)
            guidance.append(top.mean(dim=1).double().cpu())
        if not guidance:
            return outputs.features.new_zeros(0)
        energies = torch.cat([energy(f) for f in chunks(outputs.logits)])
        return (energies * torch.cat(guidance)).float()
