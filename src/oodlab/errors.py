"""Every error a user of oodlab may catch.

An :class:`OodlabError` is a mistake the user can fix (a bad name, a bad value, missing
data). The command-line entry points print its message alone, without a traceback.
:class:`RunInterrupted` is the one exception that is not a mistake: a run stopped by a signal.
"""

from __future__ import annotations

import difflib
import signal
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class OodlabError(Exception):
    """A problem with the user's input or environment, reported without a traceback."""


class ConfigError(OodlabError, ValueError):
    """A config value outside its allowed range. The message names the key."""

    def __init__(self, key: str, value: object, allowed: str):
        self.key = key
        super().__init__(f"{key}={value!r} is not allowed: {key} must be {allowed}.")


class UnknownNameError(OodlabError, KeyError):
    """A name that is not registered. The message lists the choices."""

    def __init__(self, kind: str, name: str, choices: Iterable[str], hint: str = ""):
        choices = sorted(choices)
        close = difflib.get_close_matches(name, choices, n=3)
        msg = f"Unknown {kind} {name!r}."
        if close:
            msg += f" Did you mean {', '.join(map(repr, close))}?"
        if len(choices) <= 40:
            msg += f" Choices: {', '.join(choices)}."
        if hint:
            msg += f" {hint}"
        self.message = msg
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.message


class MissingFileError(OodlabError, FileNotFoundError):
    """A file oodlab needs that is not there (a checkpoint, a run's scores, a study). The message
    says what is missing, where we looked, and what to do."""

    def __init__(self, what: str, looked_in: str, what_to_do: str):
        super().__init__(f"{what} not found: looked in {looked_in}. {what_to_do}")


class MissingDataError(MissingFileError):
    """Data that is not on disk. The message names the dataset, where we looked, and how to get
    it."""

    def __init__(self, dataset: str, looked_in: str, how_to_get: str):
        FileNotFoundError.__init__(
            self, f"Dataset {dataset!r} not found in {looked_in}. {how_to_get}"
        )


class NonFiniteLossError(OodlabError, FloatingPointError):
    """Training produced a NaN or infinite loss."""

    def __init__(self, step: int, epoch: int, loss_name: str):
        super().__init__(
            f"Non-finite (NaN or infinite) training loss from loss head {loss_name!r} at global "
            f"step {step} (epoch {epoch}). Lower the learning rate, raise the temperature, or "
            "enable gradient clipping (trainer.gradient_clip_val)."
        )


def find_user_error(exc: BaseException) -> OodlabError | None:
    """Walk the cause/context chain (Hydra wraps instantiation errors) for an OodlabError."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, OodlabError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


class CorruptDataError(OodlabError, ValueError):
    """A file that exists but cannot be used: an unreadable image or a checksum mismatch."""


class CalibrationInputError(OodlabError, ValueError):
    """Logits/targets that calibration metrics cannot use."""


class OodMetricsInputError(OodlabError, ValueError):
    """Scores that OOD metrics cannot be computed from (empty set, NaN, wrong shape)."""


class CheckpointError(OodlabError, FileNotFoundError):
    """A checkpoint that is missing or cannot be loaded. The message names the path."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        super().__init__(f"Checkpoint {self.path!r} {problem}")


class MissingWeightsError(OodlabError, FileNotFoundError):
    """Pretrained weights that are neither cached nor downloadable now."""

    def __init__(
        self, name: str, reason: str, hub_offline: bool = False, how_to_get: str | None = None
    ):
        never_try = "" if hub_offline else " Set HF_HUB_OFFLINE=1 to never try the network."
        how_to_get = how_to_get or (
            "Get them once on a machine with network (they land in the Hugging Face cache, "
            "~/.cache/huggingface, which HF_HOME moves), copy that cache here, or pass a local "
            "file with model.weights=PATH (and model.pretrained=false)."
        )
        super().__init__(
            f"Pretrained weights for {name!r} are not available: {reason}. {how_to_get}{never_try}"
        )


class MissingResultsError(MissingFileError):
    """A report directory that does not exist or holds no results.json."""

    def __init__(self, message: str):
        FileNotFoundError.__init__(self, message)


class NothingToPlotError(OodlabError):
    """A sweep that lacks what a plot needs (no swept tau, no saved scores)."""


class RunInterrupted(Exception):
    """Training stopped on a signal after saving ``checkpoint``. Not an :class:`OodlabError`:
    the run is not wrong, it was stopped, and the entry point exits with 128 + the signal."""

    def __init__(self, signum: int, checkpoint: Path, previous_handler: Any):
        self.signum = signum
        self.checkpoint = checkpoint
        self.previous_handler = previous_handler
        super().__init__(
            f"stopped by {signal.Signals(signum).name}; checkpoint saved to {checkpoint}"
        )
