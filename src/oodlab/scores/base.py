"""The score interface. Every score returns one value per sample; higher = more in-distribution.

Inference runs once per dataset; the resulting :class:`Outputs` (logits and penultimate
features) are shared by every score. A score declares what else it needs as class
attributes, and evaluation provides exactly that:

* ``needs_model``: it runs the network again with input gradients (ODIN), through
  :meth:`Score.score_inputs_grid`;
* ``needs_train``: :meth:`Score.fit` receives the ID *training* split's outputs (ReAct's
  percentile, Mahalanobis' means and covariance, KNN's feature bank);
* ``needs_val``: :meth:`Score.fit` also receives the ID *validation* split's outputs, as
  the keyword ``val`` (temperature scaling's T and KL matching's templates, fitted on ID val
  as OpenOOD does); only these scores get the keyword;
* ``needs_features``: it reads the penultimate features, so the model must expose them;
* ``needs_head``: it runs or differentiates the model's last layer on cached features
  (ReAct, GradNorm); :meth:`Score.fit` finds it as ``model.head``.

Hyperparameters are declared per class in ``spec``: a published default, a default search
grid and a check that turns a bad value into a :class:`ConfigError` naming the key. ``spec`` is
the one place they live: ``conf/eval/default.yaml`` holds only what a user overrides
(``eval.params`` fixes a key, ``eval.grids`` replaces a key's grid).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from oodlab._infra.registry import Registry

# Hyperparameter checks, (key, value) -> the value converted or ConfigError; the score modules
# import them from here under these names.
from oodlab._infra.validate import non_negative as non_negative_float  # noqa: F401
from oodlab._infra.validate import percentile, positive_int  # noqa: F401
from oodlab._infra.validate import positive as positive_float  # noqa: F401
from oodlab.errors import ConfigError


@dataclass(frozen=True)
class Outputs:
    """One dataset's inference results, on the CPU."""

    logits: Tensor
    features: Tensor
    labels: Tensor


@dataclass(frozen=True)
class HParam:
    """One hyperparameter: the published default, the default validation grid, and a check."""

    default: Any
    grid: tuple[Any, ...]
    check: Callable[[str, Any], Any]


class Score:
    name: ClassVar[str]
    needs_model: ClassVar[bool] = False
    needs_train: ClassVar[bool] = False
    needs_val: ClassVar[bool] = False
    needs_features: ClassVar[bool] = False
    needs_head: ClassVar[bool] = False
    #: hyperparameters; a key fixed in eval.params skips the search for that key
    spec: ClassVar[dict[str, HParam]] = {}
    #: where the score comes from, for the README table and results
    paper: ClassVar[str] = ""

    def __init__(self, **hparams: Any):
        check_keys(type(self), "eval.params", hparams)
        values = {k: p.default for k, p in self.spec.items()} | dict(hparams)
        self._hparams = {
            k: self.spec[k].check(f"eval.params.{self.name}.{k}", v) for k, v in values.items()
        }

    def hparams(self) -> dict[str, Any]:
        return dict(self._hparams)

    def fit(self, train: Outputs | None, model: nn.Module) -> None:
        """Fit statistics on the ID training split (never on test data) and keep what the
        score needs from ``model``, whose ``head`` is the last layer. ``train`` is None
        unless ``needs_train``. A ``needs_val`` score takes a keyword ``val`` as well (the ID
        validation split's outputs), which evaluation passes to those scores only."""

    def score(self, outputs: Outputs) -> Tensor:
        raise NotImplementedError

    def score_inputs(self, model: nn.Module, images: Tensor, input_std: Tensor) -> Tensor:
        """For ``needs_model`` scores: ``images`` are normalised network inputs on the model's
        device, ``input_std`` the per-channel std (1, C, 1, 1) of that normalisation."""
        return self.score_inputs_grid(model, images, input_std, [self.hparams()])[0]

    @classmethod
    def score_inputs_grid(
        cls, model: nn.Module, images: Tensor, input_std: Tensor, settings: list[dict[str, Any]]
    ) -> list[Tensor]:
        """One score tensor per hyperparameter setting, for one batch. Override to share work
        between settings (ODIN computes one input gradient per temperature)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v}' for k, v in self._hparams.items())})"


SCORES: Registry[type[Score]] = Registry("score")


def register_score(cls: type[Score]) -> type[Score]:
    SCORES.register(cls.name)(cls)
    return cls


def check_keys(cls: type[Score], section: str, given: Mapping[str, Any]) -> None:
    """A ConfigError naming the first key of ``given`` that ``cls`` does not declare, and the
    keys it does; ``section`` is ``eval.params`` or ``eval.grids``."""
    for key in given:
        if key not in cls.spec:
            keys = ", ".join(sorted(cls.spec)) or "none: it has no hyperparameters"
            raise ConfigError(
                f"{section}.{cls.name}.{key}", given[key], f"a key of score {cls.name} ({keys})"
            )


def grid_settings(grid: Mapping[str, list[Any]]) -> Iterator[dict[str, Any]]:
    """Every combination of a grid, in grid order (the first key varies slowest)."""
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        yield dict(zip(keys, values))


@torch.no_grad()
def run_head(head: nn.Module, features: Tensor, batch_size: int = 4096) -> Tensor:
    """The head's logits for cached (CPU) features, computed in batches on the head's device."""
    device = next(head.parameters(), torch.empty(0)).device
    was_training = head.training
    head.eval()
    logits = [
        head(features[i : i + batch_size].to(device)).float().cpu()
        for i in range(0, len(features), batch_size)
    ]
    head.train(was_training)
    return torch.cat(logits) if logits else features.new_zeros(0, getattr(head, "num_classes", 0))
