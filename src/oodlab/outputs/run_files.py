"""The files a run leaves in its directory: results.json, scores.npz and the plots."""

from __future__ import annotations

from pathlib import Path

from oodlab.outputs.record import RunRecord
from oodlab.outputs.scores_file import save_scores


def save_run_files(
    out: Path, record: RunRecord, plots: bool = True, curve_ood: str | None = None
) -> None:
    """results.json (atomically), every score of every sample (scores.npz) and, with
    ``plots``, the logit-norm curve, the reliability diagram and the score histograms."""
    record.write(out)
    evaluation = record.evaluation
    assert evaluation is not None
    save_scores(out, evaluation.id_scores, evaluation.ood_scores)
    if plots:
        save_plots(out, record, curve_ood)


def save_plots(out: Path, record: RunRecord, curve_ood: str | None) -> None:
    from oodlab.outputs.plots import (
        plot_logit_norm_curve,
        plot_score_histograms,
        reliability_diagram,
    )

    evaluation, run = record.evaluation, record.run
    assert evaluation is not None
    title = f"{run.dataset} / {run.loss} {run.loss_params}"
    if record.logit_norm and record.logit_norm.get("epoch"):
        plot_logit_norm_curve(
            record.logit_norm, out / "logit_norm.png", title=title, ood_name=str(curve_ood)
        )
    test = evaluation.outputs["id"]
    reliability_diagram(
        test.logits, test.labels, out / "reliability.png", title=f"{title}: ID test"
    )
    plot_score_histograms(
        {k: v.numpy() for k, v in evaluation.id_scores.items()},
        {k: {s: t.numpy() for s, t in v.items()} for k, v in evaluation.ood_scores.items()},
        out / "score_histograms.png",
        title=title,
    )
