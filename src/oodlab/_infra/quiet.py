"""Silence the known noise of third-party libraries, keep oodlab's own messages.

Each entry below is a message every run printed without telling the user anything they can act
on. ``verbose_third_party=true`` (a top-level config key) leaves them all on.
"""

from __future__ import annotations

import logging
import os
import re
import warnings

#: warnings raised inside these libraries' own code, by message
NOISY_WARNINGS = (
    r".*LeafSpec.*",  # torch's pytree deprecation, from Lightning's own code
    r".*on_after_batch_transfer.*",  # Lightning's notice about our (intended) batch hook
    r".*does not have many workers.*",  # no DataLoader workers: batches are indexed tensors
    r".*The number of training batches.*is smaller than the logging interval.*",
    r".*Checkpoint directory .* exists and is not empty.*",  # resuming writes where it resumed from
)
#: log records dropped by message: (logger, pattern). The first MLflow run of a store creates
#: its experiment; Lightning announces that as a warning, printed twice
NOISY_RECORDS = (
    (r"lightning.pytorch.loggers.mlflow", r"Experiment with name .* not found\. Creating it"),
)
#: loggers whose INFO lines are set-up chatter: alembic's "setup plugin ..." (Optuna's and
#: MLflow's SQLite stores), MLflow's "Creating initial MLflow database tables", Lightning's
#: "GPU available", "💡 Tip: ... litlogger" and trainer summaries
CHATTY_LOGGERS = (
    "alembic",
    "alembic.runtime.migration",
    "mlflow",
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
)


def quiet_third_party(enabled: bool = True) -> None:
    if not enabled:
        return
    for pattern in NOISY_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name, pattern in NOISY_RECORDS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessage) for f in logger.filters):
            logger.addFilter(_DropMessage(pattern))
    # MLflow configures its own loggers when it is imported, after this runs
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    # W&B: no banner, no 30-line run summary, no "anonymous setting" warning
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("WANDB_CONSOLE", "off")


class _DropMessage(logging.Filter):
    def __init__(self, pattern: str):
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())
