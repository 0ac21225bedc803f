"""notebooks/analysis.ipynb runs headless on the test sweeps and draws its plots."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "analysis.ipynb"


@pytest.mark.slow
def test_analysis_notebook_runs_on_a_sweep(
    grid_sweep: Path, optuna_study: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("OODLAB_SWEEP_DIR", os.pathsep.join([str(grid_sweep), str(optuna_study)]))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # the saved notebook carries no outputs: what it shows comes from this run
    assert not any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
    NotebookClient(
        notebook,
        timeout=180,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    ).execute()

    outputs = {cell.source: cell.outputs for cell in notebook.cells if cell.cell_type == "code"}
    table_cell = next(out for source, out in outputs.items() if "to_markdown" in source)
    markdown = table_cell[0]["data"]["text/markdown"]
    assert "| logitnorm |" in markdown and "| ce |" in markdown and "Failed runs (3)" in markdown
    for name in ("tau_sweep", "logit_norm_curves", "score_histograms"):
        (plot,) = outputs[f'figures["{name}"]']
        assert "image/png" in plot["data"], name
