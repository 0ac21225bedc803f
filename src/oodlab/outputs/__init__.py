"""Everything one run leaves behind: the run record (results.json), the raw scores
(scores.npz), the per-run plots, the console table and what goes to the loggers."""
