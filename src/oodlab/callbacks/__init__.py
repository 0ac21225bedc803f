"""Lightning callbacks."""

from oodlab.callbacks.ood_monitor import OODMonitor

__all__ = ["OODMonitor"]
