"""Reading runs and sweeps: every results.json below some directories as one table, paper-style
tables (Markdown, CSV, LaTeX) and the sweep's plots. Nothing here is used while a run trains;
what a run writes lives in oodlab.outputs.

A sweep in a notebook::

    from oodlab import report
    sweep = report.load_sweep("logs/multiruns/2024-05-01_12-00-00")
    table = report.summary_table(sweep, score="msp")
    report.plot_param_sweep(table)
"""

from oodlab.outputs.record import RESULTS_FILE, RunRecord
from oodlab.outputs.scores_file import SCORES_FILE, load_scores
from oodlab.report.collect import Sweep, find_results, load_sweep, sweep_group_name
from oodlab.report.optuna_study import study_frame
from oodlab.report.sweep_plots import (
    NothingToPlotError,
    plot_logit_norm_curves,
    plot_param_sweep,
    plot_score_histograms_by_loss,
    representative_runs,
    sweep_figures,
    write_sweep_plots,
)
from oodlab.report.tables import (
    SweepTable,
    summary_table,
    tidy_frame,
    to_csv,
    to_latex,
    to_markdown,
)

__all__ = [
    "RESULTS_FILE",
    "SCORES_FILE",
    "NothingToPlotError",
    "RunRecord",
    "Sweep",
    "SweepTable",
    "find_results",
    "load_scores",
    "load_sweep",
    "plot_logit_norm_curves",
    "plot_param_sweep",
    "plot_score_histograms_by_loss",
    "representative_runs",
    "study_frame",
    "summary_table",
    "sweep_figures",
    "sweep_group_name",
    "tidy_frame",
    "to_csv",
    "to_latex",
    "to_markdown",
    "write_sweep_plots",
]
