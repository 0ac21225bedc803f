"""Lightning callbacks: the per-epoch OOD monitor, the state a resumed run needs, stopping
cleanly on a signal, and atomic checkpoint writes."""

from oodlab.callbacks.ood_monitor import OODMonitor
from oodlab.callbacks.preemption import Preemption, RunInterrupted
from oodlab.callbacks.run_state import RunState

__all__ = ["OODMonitor", "Preemption", "RunInterrupted", "RunState"]
