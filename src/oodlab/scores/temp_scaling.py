"""Temperature scaling (Guo et al., ICML 2017) as an OOD score: MSP at the fitted temperature."""

from __future__ import annotations

from torch import Tensor, nn

from oodlab.metrics.calibration import fit_temperature
from oodlab.scores._posthoc import val_outputs
from oodlab.scores.base import Outputs, Score, register_score


@register_score
class TemperatureScaling(Score):
    """``max softmax(f / T)`` with ``T`` minimising the NLL on the labelled ID validation split.

    Guo, Pleiss, Sun and Weinberger, "On Calibration of Modern Neural Networks" (ICML 2017);
    OpenOOD v1.5 openood/postprocessors/temp_scaling_postprocessor.py
    (configs/postprocessors/temp_scaling.yml: no hyperparameters), which fits ``T`` on
    ``id_loader_dict['val']``: hence ``needs_val``. ``T`` comes from
    :func:`oodlab.metrics.calibration.fit_temperature`, the same fit as the run's calibration
    section (L-BFGS on ``log T`` in float64, a golden-section search as fallback), so the two
    report one temperature. OpenOOD runs L-BFGS on ``T`` itself from 1.5 with ``lr=0.01`` and
    ``max_iter=50``, which may stop short of the minimum; this is the NLL minimiser.
    """

    name = "temp_scaling"
    paper = "Guo et al., ICML 2017"
    needs_val = True

    def fit(self, train: Outputs | None, model: nn.Module, *, val: Outputs | None = None) -> None:
        val = val_outputs(self, val)
        if bool((val.labels < 0).any()):
            raise ValueError(
                f"score {self.name!r} fits its temperature on the labelled ID validation "
                "split, but its labels are missing"
            )
        self.temperature = fit_temperature(val.logits, val.labels)

    def score(self, outputs: Outputs) -> Tensor:
        return (outputs.logits.double() / self.temperature).softmax(dim=1).amax(dim=1).float()
