"""The typed config: every key of every composed config has a schema entry, and a wrong value of
any key (a wrong type; for a key with a range or choices, a value outside them) ends in one line
that names the key, never in a traceback or a run. Compose-level: Hydra's compose API and the
validation pass, in-process; a few real command lines check the entry points' translation."""

from __future__ import annotations

import copy
import dataclasses
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, ListConfig, OmegaConf

from hydra_plugins.oodlab_config.checks import (
    AnyOf,
    Check,
    ListOf,
    OneOf,
    Range,
    Text,
    describe_type,
    field_info,
)
from hydra_plugins.oodlab_config.schemas import EXTRAS
from oodlab.config import config_error_line, validate_config
from oodlab.config.docs import main as docs_main
from oodlab.config.validate import schema_of
from oodlab.errors import OodlabError

CONF = Path(__file__).resolve().parents[1] / "conf"
GROUPS = ("loss", "data", "ood", "model", "optimizer", "scheduler", "trainer", "logger")
GROUPS += ("outliers", "callbacks", "arm")


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def cases() -> dict[str, tuple[str, list[str]]]:
    """Every composed config the test walks: the defaults, each experiment (also with
    debug=fast), each option of the groups, each OOD set, each data and OOD option for eval."""
    found = {
        "train": ("train", []),
        "eval": ("eval", []),
        "debug": ("train", ["debug=fast"]),
    }
    for name in options("experiment"):
        found[f"experiment={name}"] = ("train", [f"experiment={name}", "debug=fast"])
    for group in GROUPS:
        for name in options(group):
            found[f"{group}={name}"] = ("train", [f"{group}={name}"])
    for name in options("ood_set"):
        found[f"ood_set={name}"] = ("train", [f"+ood_set@ood.sets.extra={name}"])
    for name in options("data"):
        found[f"eval data={name}"] = ("eval", [f"data={name}"])
    return found


@pytest.fixture(scope="module")
def composer() -> Iterator[Any]:
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF), version_base="1.3"):
        yield lambda name, overrides: compose(name, overrides=overrides)
    GlobalHydra.instance().clear()


def leaves(node: DictConfig, path: str = "", root: bool = True) -> Iterator[tuple[str, Any, str]]:
    """(key, schema of its node or None, field name) for every leaf below ``node``; a mapping
    declared open (a dict field: ood.sets, model.backbone_kwargs, eval.params) is walked only
    where its values are typed nodes."""
    schema = schema_of(node, root)
    for key in node:
        name = str(key)
        if root and name == "hydra":
            continue
        child = node._get_node(name)
        full = f"{path}{name}"
        if isinstance(child, DictConfig) and not child._is_none() and not child._is_missing():
            if schema_of(child) is not None:
                yield from leaves(child, f"{full}.", root=False)
                continue
            info = field_info(schema, name) if schema is not None else None
            if info is not None and info.type_text == "a mapping" and not info.is_node:
                for sub in child:
                    grand = child._get_node(str(sub))
                    if isinstance(grand, DictConfig) and schema_of(grand) is not None:
                        yield from leaves(grand, f"{full}.{sub}.", root=False)
                continue
            entries = {str(sub): child._get_node(str(sub)) for sub in child}
            if entries and all(
                isinstance(e, DictConfig) and schema_of(e) is not None for e in entries.values()
            ):  # a plain mapping of typed entries (callbacks: entries may be removed)
                for sub, entry in entries.items():
                    yield from leaves(entry, f"{full}.{sub}.", root=False)  # type: ignore[arg-type]
                continue
            if schema is None:
                yield from leaves(child, f"{full}.", root=False)
                continue
        yield full, schema, name


def lookup(schema: type | None, name: str) -> Any:
    if schema is None:
        return None
    info = field_info(schema, name)
    if info is None and schema in EXTRAS:
        info = field_info(EXTRAS[schema], name)
    return info


@pytest.fixture(scope="module")
def composed(composer: Any) -> dict[str, DictConfig]:
    return {label: composer(name, overrides) for label, (name, overrides) in cases().items()}


def test_compose_refuses_a_wrong_type(composer: Any) -> None:
    with pytest.raises(Exception) as info:
        composer("train", ["trainer.max_epochs=abc"])
    line = config_error_line(info.value)
    assert line == (
        "trainer.max_epochs='abc' is not allowed: trainer.max_epochs must be an integer >= 1 "
        "or null."
    )


def test_every_key_in_conf_has_a_schema_entry(composed: dict[str, DictConfig]) -> None:
    missing = sorted(
        {
            f"{key} ({label})"
            for label, cfg in composed.items()
            for key, schema, name in leaves(cfg)
            if lookup(schema, name) is None
            and not key.startswith("ood.sets.")
            and not (key in (*GROUPS, "scheduler") and cfg.get(key) is None)
        }
    )
    # debug=fast shrinks the offline suites' sets, which other suites lack: untyped there
    assert not [m for m in missing if "debug" not in m], "\n".join(missing)


def test_docs_and_help_are_generated_from_the_schemas() -> None:
    assert docs_main(["--check"]) == 0, "run: python -m oodlab.config.docs"


# -- wrong values -----------------------------------------------------------------------------


def wrong_type(annotation: Any) -> str | None:
    """An override value of the wrong type for ``annotation``, or None (any value fits)."""
    text, _, _ = describe_type(annotation)
    return {
        "an integer": "abc",
        "a number": "abc",
        "true or false": "maybe",
        "a string": "[1,2]",
        "a list": "abc",
        "a mapping": "abc",
    }.get(text)


def out_of_range(check: Check | None) -> Any:
    """A value of the right type that ``check`` refuses, or None where there is none."""
    if isinstance(check, Range):
        if check.low is not None:
            return check.low - 1 if check.integer or not check.low_open else check.low
        return check.high + 1 if check.high is not None else None
    if isinstance(check, OneOf):
        return 12345 if all(isinstance(c, int) for c in check.choices) else "no_such_choice"
    if isinstance(check, AnyOf):
        return -7
    if isinstance(check, ListOf):
        if check.item is not None:
            bad = out_of_range(check.item)
            return [bad] if bad is not None else None
        return [] if check.nonempty else None
    if isinstance(check, Text):
        return "" if check.nonempty else None
    return None


def attempts(composed: dict[str, DictConfig]) -> list[tuple[str, str, str, Any, str]]:
    """(case, key, kind, value, field id) for each (schema, field) once, in the first case
    that has it: a wrong type (an override, refused while composing) and an out-of-range value
    (set on the composed config, refused by the validation pass)."""
    seen: set[tuple[str, str]] = set()
    out = []
    for label, cfg in composed.items():
        for key, schema, name in leaves(cfg):
            info = lookup(schema, name)
            if info is None or (schema.__name__, name) in seen:
                continue
            seen.add((schema.__name__, name))
            owner = schema if field_info(schema, name) is not None else EXTRAS[schema]
            annotation = typing.get_type_hints(owner)[name]
            inner = [a for a in typing.get_args(annotation) if a is not type(None)]
            bad_type = wrong_type(inner[0] if len(inner) == 1 else annotation)
            if bad_type is None and info.check is not None:
                bad_type = "[[1]]" if not isinstance(info.check, ListOf) else "{a: 1}"
            if bad_type is not None:
                out.append((label, key, "type", bad_type, f"{schema.__name__}.{name}"))
            bad = out_of_range(info.check)
            if bad is not None:
                out.append((label, key, "range", bad, f"{schema.__name__}.{name}"))
    return out


def test_every_wrong_value_is_one_line(composed: dict[str, DictConfig]) -> None:
    tried = attempts(composed)
    failures = []
    for label, key, kind, value, field_id in tried:
        cfg = copy.deepcopy(composed[label])
        line = None
        if kind == "type":
            # Hydra's own step of compose() that applies a key=value override
            (override,) = OverridesParser.create().parse_overrides([f"{key}={value}"])
            try:
                ConfigLoaderImpl._apply_overrides_to_config([override], cfg)
            except Exception as exc:
                line = config_error_line(exc)
            else:
                line = _validation_line(cfg)
        else:
            _set(cfg, key, value)
            line = _validation_line(cfg)
        if line is None or "\n" in line or key not in line:
            failures.append(f"{field_id}: {key}={value!r} ({kind}, {label}) -> {line!r}")
    print(f"{len(tried)} wrong values tried on {len({t[4] for t in tried})} schema fields")
    assert len(tried) > 400
    assert not failures, "\n".join(failures)


def _set(cfg: DictConfig, key: str, value: Any) -> None:
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    node[leaf] = value


def _validation_line(cfg: DictConfig) -> str | None:
    try:
        validate_config(cfg)
    except OodlabError as exc:
        return str(exc)
    return None


def test_short_forms_are_lists(composer: Any) -> None:
    cfg = composer(
        "train",
        [
            "eval.scores=msp",
            "callbacks.ood_monitor.scores=energy",
            "ood.mean_exclude=gaussian",
            "scheduler=multistep",
            "scheduler.milestones=5",
        ],
    )
    validate_config(cfg)
    assert list(cfg.eval.scores) == ["msp"]
    assert list(cfg.callbacks.ood_monitor.scores) == ["energy"]
    assert list(cfg.ood.mean_exclude) == ["gaussian"]
    assert list(cfg.scheduler.milestones) == [5]


def test_a_logger_key_without_its_logger_says_so(composer: Any) -> None:
    cfg = composer("train", ["logger=none", "+logger.wandb.notes=x"])
    with pytest.raises(OodlabError, match=r"logger\.wandb is set but the logger group is none"):
        validate_config(cfg)


def test_default_configs_pass(composed: dict[str, DictConfig]) -> None:
    for label, cfg in composed.items():
        if "ood_set=" in label and cfg.ood.sets.extra.get("path", 1) is None:
            pass  # a folder set without its path: refused when built, not a range
        validate_config(cfg)
    assert isinstance(composed["train"].eval.scores, ListConfig)


def test_schema_fields_have_a_meaning() -> None:
    from hydra_plugins.oodlab_config.schemas import GROUP_SCHEMAS

    for schema in [*GROUP_SCHEMAS.values(), *EXTRAS.values()]:
        for f in dataclasses.fields(schema):
            if not dataclasses.is_dataclass(f.type) and "default_factory" not in repr(f):
                assert f.metadata.get("help"), f"{schema.__name__}.{f.name} has no help"


# -- the entry points ---------------------------------------------------------------------------


def _one_line(proc: Any) -> str:
    err = proc.stderr.strip()
    assert proc.returncode == 1, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.slow
@pytest.mark.parametrize(
    "script, args, expected",
    [
        ("train.py", ["trainer.max_epochs=abc"], "trainer.max_epochs must be an integer >= 1"),
        ("train.py", ["trainer.max_epoch=3"], "Did you mean 'max_epochs'"),
        ("train.py", ["loss.tauu=1"], "To add a new key, write +loss.tauu=1"),
        ("train.py", ["seed=-5"], "seed must be an integer in [0, 4294967295]"),
        ("train.py", ["+logger.wandb.notes=x"], "logger.wandb is set but the logger group is none"),
        ("eval.py", ["plots=maybe"], "plots must be true or false"),
        ("eval.py", ["data.eval_batch_size=0"], "data.eval_batch_size must be an integer >= 1"),
        ("eval.py", ["eval.scores=[]"], "eval.scores must be a non-empty list of score names"),
    ],
)
def test_entry_points_print_one_line(run_cli, tmp_path, script, args, expected) -> None:
    logs = tmp_path / "logs"
    proc = run_cli(script, "debug=fast", "logger=none", f"paths.log_dir={logs}", *args)
    assert expected in _one_line(proc)
    written = [p for p in logs.rglob("*") if p.is_file()] if logs.exists() else []
    # at most the run directory's Hydra record and log: no checkpoint, results or data
    assert all(".hydra" in p.parts or p.suffix == ".log" for p in written), written


def test_a_callback_can_still_be_removed_and_is_still_typed(composer: Any) -> None:
    """``~callbacks.progress_bar`` (the benchmarks' and docs' command lines) removes it; the
    entries that stay keep their types."""
    cfg = composer("train", ["~callbacks.progress_bar"])
    assert "progress_bar" not in cfg.callbacks and "ood_monitor" in cfg.callbacks
    with pytest.raises(Exception) as info:
        composer("train", ["callbacks.progress_bar.refresh_per_second=abc"])
    assert "callbacks.progress_bar.refresh_per_second" in config_error_line(info.value)
