"""Results files, console tables and plots."""

from oodlab.report.results import RESULTS_FILE, SCHEMA, print_results, read_results, results_table, write_results

__all__ = ["RESULTS_FILE", "SCHEMA", "print_results", "read_results", "results_table", "write_results"]
