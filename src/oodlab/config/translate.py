"""Hydra's and OmegaConf's composition errors, each in one line that names the key, the value
given and what is allowed (the schema's words, with the choices where there are choices).

Composition happens inside Hydra, before oodlab's error guard runs: the entry points wrap
Hydra's error reporting (:func:`oodlab.cli.run_hydra`) and print :func:`config_error_line`.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from omegaconf.errors import OmegaConfBaseException, ValidationError

from hydra_plugins.oodlab_config.checks import allowed_text, field_info
from oodlab.errors import ConfigError

_VALUE = re.compile(r"Value '(.*?)'(?: of type| is not)")


def config_error_line(exc: BaseException) -> str | None:
    """One line for a config error raised while Hydra composes; None for anything else."""
    from hydra.errors import HydraException

    cause = exc.__cause__ if isinstance(exc.__cause__, OmegaConfBaseException) else None
    omega = exc if isinstance(exc, OmegaConfBaseException) else cause
    message = str(exc)
    if omega is not None and getattr(omega, "full_key", None):
        line = _omegaconf_line(omega, _override_of(message))
        if line is not None:
            return line
    if isinstance(exc, (HydraException, OmegaConfBaseException)):
        return _hydra_line(exc, message)
    return None


def _override_of(message: str) -> str | None:
    """The override (KEY=VALUE) a Hydra message quotes, if it quotes one."""
    match = re.search(r"(?:Error merging override |To append to your config use \+)(\S+)", message)
    return match.group(1) if match else None


def _omegaconf_line(err: OmegaConfBaseException, override: str | None) -> str | None:
    key = str(err.full_key)
    schema = getattr(err, "object_type", None)
    leaf = key.rsplit(".", 1)[-1]
    if isinstance(err, ValidationError):
        value: Any = override.split("=", 1)[1] if override and "=" in override else None
        if value is None:
            found = _VALUE.search(str(err.msg))
            value = found.group(1) if found else err.value if hasattr(err, "value") else "?"
        info = field_info(schema, leaf) if isinstance(schema, type) else None
        allowed = allowed_text(info) if info is not None else _first_line(str(err.msg))
        return str(ConfigError(key, value, allowed))
    text = str(err.msg)
    if "not in" in text or "not in struct" in text:
        keys = _keys_of(err, schema)
        node = key.rsplit(".", 1)[0] if "." in key else "the config"
        close = difflib.get_close_matches(leaf, keys, n=3)
        line = f"{key} is not a key of {node}."
        if close:
            line += f" Did you mean {', '.join(repr(c) for c in close)}?"
        if keys and len(keys) <= 40:
            line += f" Its keys: {', '.join(keys)}."
        value = override.split("=", 1)[1] if override and "=" in override else "VALUE"
        line += f" To add a new key, write +{key}={value}."
        return line
    if "Missing mandatory value" in text:
        return f"{key} has no value: set it with {key}=VALUE."
    return None


def _keys_of(err: OmegaConfBaseException, schema: Any) -> list[str]:
    parent = getattr(err, "parent_node", None)
    if parent is not None and hasattr(parent, "keys"):
        return [str(k) for k in parent]
    if isinstance(schema, type) and hasattr(schema, "__dataclass_fields__"):
        return list(schema.__dataclass_fields__)
    return []


def _hydra_line(exc: BaseException, message: str) -> str:
    from hydra.errors import MissingConfigException

    if isinstance(exc, MissingConfigException) or "Could not find '" in message:
        found = re.search(r"Could not find '([^']+)'", message)
        options = re.findall(r"^\t(\S+)$", message, re.M)
        if found and "/" in found.group(1):
            group, name = found.group(1).rsplit("/", 1)
            line = str(ConfigError(group, name, "one of " + ", ".join(options)))
            close = difflib.get_close_matches(name, options, n=3)
            return line + (f" Did you mean {', '.join(close)}?" if close else "")
    if "Could not append to config. An item is already at" in message:
        found = re.search(r"An item is already at '([^']+)'", message)
        key = found.group(1) if found else "the key"
        return (
            f"{key} is already in the config: write {key}=VALUE (without +) to change it, "
            f"or ++{key}=VALUE."
        )
    if "Could not override" in message and "To append to your config use" in message:
        found = re.search(r"To append to your config use (\+\S+)", message)
        key = re.search(r"Could not override '([^']+)'", message)
        add = found.group(1) if found else "+KEY=VALUE"
        return f"{key.group(1) if key else 'the key'} is not in the config; to add it, write {add}."
    from hydra.errors import OverrideParseException

    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if isinstance(exc, OverrideParseException):
        return f"The override {exc.override!r} does not parse: {' '.join(lines)}"
    cause = exc.__cause__
    if isinstance(cause, OmegaConfBaseException):
        lines.append(_first_line(str(cause.msg)))
    return " ".join(lines) or type(exc).__name__


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text
