"""Results files, console tables and plots of one run; tables and plots of a whole sweep.

A sweep in a notebook::

    from oodlab import report
    sweep = report.load_sweep("logs/multiruns/2024-05-01_12-00-00")
    table = report.summary_table(sweep, score="msp")
    report.plot_param_sweep(table)
"""

from oodlab.report.collect import Sweep, find_results, load_sweep, sweep_group_name
from oodlab.report.optuna_study import sqlite_storage, study_frame, sweeper_value
from oodlab.report.results import (
    RESULTS_FILE,
    SCHEMA,
    print_results,
    read_results,
    results_table,
    write_results,
)
from oodlab.report.scores_file import SCORES_FILE, load_scores, save_scores
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
    "SCHEMA",
    "SCORES_FILE",
    "NothingToPlotError",
    "Sweep",
    "SweepTable",
    "find_results",
    "load_scores",
    "load_sweep",
    "plot_logit_norm_curves",
    "plot_param_sweep",
    "plot_score_histograms_by_loss",
    "print_results",
    "read_results",
    "representative_runs",
    "results_table",
    "save_scores",
    "sqlite_storage",
    "study_frame",
    "summary_table",
    "sweep_figures",
    "sweep_group_name",
    "sweeper_value",
    "tidy_frame",
    "to_csv",
    "to_latex",
    "to_markdown",
    "write_results",
    "write_sweep_plots",
]
