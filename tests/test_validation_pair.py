"""The validation pair carries signal on the default experiment (its FPR95 and AUROC vary with
tau), and a degenerate one (every setting ties, or AUROC < 0.5) is said once and recorded."""

from __future__ import annotations

import logging

import pytest
import torch

import oodlab
from oodlab.run.train import train

TAUS = (0.005, 0.04, 0.5)


@pytest.mark.slow
def test_the_tau_objective_varies_on_the_default_experiment(compose_cfg):
    """What hparams_search=tau_optuna minimises: the last epoch's validation FPR95 (msp)."""
    values = []
    for tau in TAUS:
        cfg = compose_cfg(
            [
                f"loss.tau={tau}",
                "trainer.max_epochs=2",
                "logger=none",
                "plots=false",
                "eval.scores=[msp]",
            ]
        )
        results, objective = train(cfg)
        assert (
            results["val"]["objective"] == "val_ood/msp/fpr95"
            and objective == results["val"]["objective_value"]
        )
        values.append((objective, results["scores"]["msp"]["val_auroc"]))
        assert results["warnings"] == [], results["warnings"]
    assert len({v[0] for v in values}) > 1, f"every tau gives the same validation FPR95: {values}"
    assert len({v[1] for v in values}) > 1, f"every tau gives the same validation AUROC: {values}"


def test_a_degenerate_validation_pair_is_said_once_and_recorded(caplog):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)).eval()
    g = torch.Generator().manual_seed(0)
    val = (
        torch.randint(0, 256, (40, 1, 3, 4), dtype=torch.uint8, generator=g),
        torch.randint(0, 3, (40,), generator=g),
    )
    test = (
        torch.randint(0, 256, (40, 1, 3, 4), dtype=torch.uint8, generator=g),
        torch.randint(0, 3, (40,), generator=g),
    )
    with caplog.at_level(logging.WARNING):
        # the validation OOD set is the ID validation images themselves: nothing to tell apart
        record = oodlab.evaluate(
            model, test, {"ood": test[0]}, scores=["msp", "energy"], id_val=val, val_ood=val[0]
        )
    warnings = [r for r in caplog.records if "validation pair cannot choose" in r.getMessage()]
    assert len(warnings) == 1 and "energy" in warnings[0].getMessage()
    assert record.scores["energy"].degenerate.startswith("all 4 settings tie")
    assert (
        any("energy" in w for w in record.warnings)
        and record.to_json()["scores"]["energy"]["degenerate"]
    )


def test_the_old_gaussian_validation_set_is_flagged(compose_cfg):
    """Gaussian noise scores as more in-distribution than digits: flagged in any suite."""
    cfg = compose_cfg(
        [
            "debug=fast",
            "trainer.limit_train_batches=1.0",
            "ood_set@ood.val=gaussian",
            "ood.val.seed=9001",
            "eval.scores=[msp]",
        ]
    )
    results, _ = train(cfg)
    assert any("msp" in w and "AUROC" in w for w in results["warnings"]), results["warnings"]
