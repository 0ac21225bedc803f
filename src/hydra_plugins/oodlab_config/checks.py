"""What a config key allows beyond its type: a range, a set of choices, a list of such values.

Each schema field (:mod:`hydra_plugins.oodlab_config.schemas`) declares its check beside its
type through :func:`key`, in the field's metadata; one validation pass (oodlab.config.validate)
walks the composed config and applies them all. Torch-free and oodlab-free: Hydra imports this
at start-up.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING


class Check:
    """A predicate on a plain (resolved, containerised) value, and its wording."""

    def allowed(self) -> str:
        raise NotImplementedError

    def ok(self, value: Any) -> bool:
        raise NotImplementedError

    def normalise(self, value: Any) -> Any:
        """The value in its canonical form (a list for a single item); unchanged by default."""
        return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fmt(x: float) -> str:
    return f"{x:g}" if abs(x) < 1e6 else str(int(x)) if float(x).is_integer() else f"{x:g}"


@dataclass(frozen=True)
class Range(Check):
    """A number (an integer with ``integer``) from ``low`` to ``high``; an end is excluded when
    its ``*_open`` flag is set. ``what`` names the kind, e.g. "a percentile"."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    what: str = ""

    def allowed(self) -> str:
        what = self.what or ("an integer" if self.integer else "a number")
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"{what} in {left}{_fmt(self.low)}, {_fmt(self.high)}{right}"
        if self.low is not None:
            return f"{what} {'>' if self.low_open else '>='} {_fmt(self.low)}"
        if self.high is not None:
            return f"{what} {'<' if self.high_open else '<='} {_fmt(self.high)}"
        return what

    def ok(self, value: Any) -> bool:
        if not _is_number(value) or math.isnan(value):
            return False
        if self.integer and not (isinstance(value, int) or float(value).is_integer()):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (
            self.high is not None and (value >= self.high if self.high_open else value > self.high)
        )


@dataclass(frozen=True)
class OneOf(Check):
    """One of ``choices`` (compared with ==; True is not 1)."""

    choices: tuple[Any, ...]

    def allowed(self) -> str:
        return "one of " + ", ".join(_word(c) for c in self.choices)

    def ok(self, value: Any) -> bool:
        return any(type(value) is type(c) and value == c for c in self.choices)


@dataclass(frozen=True)
class AnyOf(Check):
    """A value that passes one of ``checks``."""

    checks: tuple[Check, ...]

    def allowed(self) -> str:
        return " or ".join(c.allowed() for c in self.checks)

    def ok(self, value: Any) -> bool:
        return any(c.ok(value) for c in self.checks)


@dataclass(frozen=True)
class ListOf(Check):
    """A list whose items pass ``item``; a single item stands for a list of one (the short form
    ``eval.scores=msp``) unless ``short`` is false."""

    item: Check | None = None
    nonempty: bool = False
    short: bool = True
    what: str = ""

    def allowed(self) -> str:
        text = f"a {'non-empty ' if self.nonempty else ''}list"
        if self.what:
            text += f" of {self.what}"
        elif self.item is not None:
            text += f" of {self.item.allowed().removeprefix('a ').removeprefix('an ')}s"
        return text

    def normalise(self, value: Any) -> Any:
        if self.short and value is not None and not isinstance(value, (list, tuple, dict)):
            return [value]
        return value

    def ok(self, value: Any) -> bool:
        if not isinstance(value, (list, tuple)) or (self.nonempty and not value):
            return False
        return self.item is None or all(self.item.ok(v) for v in value)


@dataclass(frozen=True)
class Text(Check):
    """A string; ``nonempty`` refuses ""."""

    nonempty: bool = True
    what: str = "a string"

    def allowed(self) -> str:
        return f"{'a non-empty' if self.nonempty else 'a'} {self.what.removeprefix('a ')}"

    def ok(self, value: Any) -> bool:
        return isinstance(value, str) and (bool(value.strip()) or not self.nonempty)


def _word(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


#: the named ranges of the schemas
POSITIVE = Range(0, low_open=True)
NON_NEGATIVE = Range(0)
POSITIVE_INT = Range(1, integer=True)
NON_NEGATIVE_INT = Range(0, integer=True)
FRACTION = Range(0, 1, what="a fraction")
OPEN_FRACTION = Range(0, 1, low_open=True, high_open=True, what="a fraction")
PERCENTILE = Range(0, 100, low_open=True, what="a percentile")
#: numpy's RandomState and torch.manual_seed both take 0 .. 2**32 - 1
SEED = Range(0, 2**32 - 1, integer=True)
#: an image count (int >= 1) or a share of the images (a fraction in (0, 1))
COUNT_OR_FRACTION = AnyOf((POSITIVE_INT, OPEN_FRACTION))
NAMES = ListOf(Text(), what="names")
#: a per-channel statistic: 1 or 3 numbers
CHANNEL_STATS = ListOf(Range(), nonempty=True, short=False, what="numbers, one per channel")


def key(help: str, check: Check | None = None, *, default: Any = MISSING) -> Any:
    """A schema field: its one line of meaning and its check (metadata), and its default
    (MISSING: the yaml file sets it; a schema never adds a key the yaml lacks)."""
    metadata = {"help": help, "check": check}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: default.copy(), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class FieldInfo:
    """One schema field, as the validation pass and the generated docs read it."""

    name: str
    type_text: str
    nullable: bool
    check: Check | None
    help: str
    is_node: bool


def field_info(schema: type, name: str) -> FieldInfo | None:
    """The field ``name`` of the schema dataclass ``schema``, or None when it has none."""
    fields = {f.name: f for f in dataclasses.fields(schema)}
    if name not in fields:
        return None
    f = fields[name]
    hints = typing.get_type_hints(schema)
    text, nullable, is_node = describe_type(hints.get(name, Any))
    return FieldInfo(
        name, text, nullable, f.metadata.get("check"), f.metadata.get("help", ""), is_node
    )


def describe_type(annotation: Any) -> tuple[str, bool, bool]:
    """(type in words, whether null is allowed, whether it is a schema node)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union:
        inner = [a for a in args if a is not type(None)]
        text, _, node = describe_type(inner[0]) if len(inner) == 1 else ("any value", True, False)
        return text, True, node
    if dataclasses.is_dataclass(annotation):
        return "a mapping", False, True
    if annotation is Any:
        return "any value", True, False
    if origin in (list, Sequence) or annotation is list:
        return "a list", False, False
    if origin is dict or annotation is dict:
        return "a mapping", False, False
    words = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    return words.get(annotation, getattr(annotation, "__name__", str(annotation))), False, False


def short_type(annotation_text: str, nullable: bool) -> str:
    """The type column of the docs: int, float, bool, str, list, map, any; ``?`` for null."""
    words = {
        "an integer": "int",
        "a number": "float",
        "true or false": "bool",
        "a string": "str",
        "a list": "list",
        "a mapping": "map",
        "any value": "any",
    }
    text = words.get(annotation_text, annotation_text)
    return f"{text} | null" if nullable and text != "any" else text


def allowed_text(info: FieldInfo) -> str:
    """What the key allows, in words: its check, else its type; "or null" when null is."""
    text = info.check.allowed() if info.check is not None else info.type_text
    if info.nullable and info.type_text != "any value":
        text += " or null"
    return text
