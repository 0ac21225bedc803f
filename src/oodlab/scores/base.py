"""The score interface. Every score returns one value per sample; higher = more in-distribution.

Inference runs once per dataset; the resulting :class:`Outputs` (logits and penultimate
features) are shared by every score. Scores that must run the network again (ODIN, GradNorm)
set ``needs_model`` and implement :meth:`Score.score_inputs`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

from oodlab._infra.registry import Registry


@dataclass(frozen=True)
class Outputs:
    """One dataset's inference results, on the CPU."""

    logits: Tensor
    features: Tensor
    labels: Tensor


class Score:
    name: ClassVar[str]
    #: True when the score needs gradients through the network (re-runs the model)
    needs_model: ClassVar[bool] = False
    #: hyperparameter grid searched on the validation pair; the first entry of each list is the default
    grid: ClassVar[dict[str, list[Any]]] = {}

    def __init__(self, **hparams: Any):
        unknown = set(hparams) - set(self.grid)
        if unknown:
            from oodlab._infra.errors import ConfigError

            raise ConfigError(f"scores.{self.name}", hparams, f"keys among {sorted(self.grid) or 'none'}")
        self._hparams = {k: v[0] for k, v in self.grid.items()} | dict(hparams)

    def hparams(self) -> dict[str, Any]:
        return dict(self._hparams)

    def fit(self, train: Outputs, model: nn.Module | None = None) -> None:
        """Fit statistics on the ID training split (never on test data). Default: nothing."""

    def score(self, outputs: Outputs) -> Tensor:
        raise NotImplementedError

    def score_inputs(self, model: nn.Module, images: Tensor) -> Tensor:
        """For ``needs_model`` scores: images are normalised network inputs on the device."""
        raise NotImplementedError


SCORES: Registry[type[Score]] = Registry("score")


def register_score(cls: type[Score]) -> type[Score]:
    SCORES.register(cls.name)(cls)
    return cls
