"""The training progress bar: Lightning's rich bar, redrawn a few times a second, and only on a
terminal.

Lightning's default redraws 100 times a second from a thread of its own, which competes with
training for the CPU (3.5 s of a 30 s default run on two cores). In a log file or a SLURM
output a bar is noise: it is left out there.
"""

from __future__ import annotations

import sys
from typing import Any

from lightning.pytorch.callbacks import RichProgressBar


class ProgressBar(RichProgressBar):
    def __init__(self, refresh_per_second: int = 4, **kwargs: Any):
        super().__init__(refresh_rate=refresh_per_second, **kwargs)
        if not sys.stdout.isatty():
            self.disable()
