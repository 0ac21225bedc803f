"""One pass over a composed config that applies every range and choice the schemas declare.

Each typed node of the config remembers its schema dataclass (OmegaConf's ``object_type``), so
the pass walks the config and, for every key with a ``check`` in its field's metadata, checks
the (resolved) value. A value in a short form (``eval.scores=msp``) is rewritten in place to
its canonical form (``[msp]``). Keys of open schemas that the schema does not declare are typed
by ``EXTRAS`` where listed there; :func:`check_target_arguments` checks the others against the
node's ``_target_``. Torch-free, except that last function (it imports the targets).
"""

from __future__ import annotations

import dataclasses
import inspect

from omegaconf import DictConfig, ListConfig, OmegaConf

from hydra_plugins.oodlab_config.checks import Check, FieldInfo, allowed_text, field_info
from hydra_plugins.oodlab_config.schemas import EXTRAS, OPEN, EvalRoot, TrainRoot
from oodlab.errors import ConfigError, OodlabError, UnknownNameError

#: Hydra's instantiate keys: never a target's argument
HYDRA_KEYS = frozenset({"_target_", "_partial_", "_args_", "_recursive_", "_convert_"})
#: keys oodlab itself reads off a node before instantiating it
OODLAB_KEYS = {"interval", "artifacts", "cacheable", "streaming"}
_TYPES: dict[str, tuple[type, ...]] = {
    "an integer": (int,),
    "a number": (int, float),
    "true or false": (bool,),
    "a string": (str,),
    "a list": (list, tuple),
    "a mapping": (dict,),
}


class LoggerOffError(OodlabError):
    """A logger's keys set while that logger is not chosen."""


def schema_of(node: DictConfig, root: bool = False) -> type | None:
    kind = node._metadata.object_type
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        return kind
    if root:
        return TrainRoot if "loss" in node else EvalRoot
    return None


def validate_config(cfg: DictConfig) -> None:
    """Every declared range and choice of ``cfg``, and every logger entry having its logger;
    raises :class:`~oodlab.errors.ConfigError` naming the first bad key."""
    _walk(cfg, "", root=True)
    check_loggers(cfg)


def _walk(node: DictConfig, path: str, root: bool = False) -> None:
    schema = schema_of(node, root)
    for name in list(node.keys()):
        name = str(name)
        if root and name == "hydra":
            continue
        full = f"{path}{name}"
        child = node._get_node(name)
        info = field_info(schema, name) if schema is not None else None
        extra = False
        if info is None and schema is not None and schema in EXTRAS:
            info = field_info(EXTRAS[schema], name)
            extra = info is not None
        if info is not None and (info.check is not None or extra):
            _check(node, name, full, info, typed=extra)
        if isinstance(child, DictConfig) and not child._is_none() and not child._is_missing():
            _walk(child, f"{full}.")


def _check(node: DictConfig, name: str, full: str, info: FieldInfo, typed: bool) -> None:
    if node._get_node(name)._is_interpolation():  # type: ignore[union-attr]
        return  # the key it points to is checked where it is set
    try:
        raw = node[name]
    except Exception:  # an interpolation that cannot resolve here (e.g. ${hydra:...} offline)
        return
    value = (
        OmegaConf.to_container(raw, resolve=True)
        if isinstance(raw, DictConfig | ListConfig)
        else raw
    )
    check: Check | None = info.check
    given = value
    if check is not None:
        normal = check.normalise(value)
        if normal is not value and normal != value:
            node[name] = normal
            value = normal
    if value is None:
        if info.nullable:
            return
        raise ConfigError(full, value, allowed_text(info))
    if typed and info.type_text in _TYPES:
        kinds = _TYPES[info.type_text]
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise ConfigError(full, value, allowed_text(info))
    if check is not None and not check.ok(value):
        raise ConfigError(full, given, allowed_text(info))


def check_loggers(cfg: DictConfig) -> None:
    """``+logger.wandb.notes=x`` with ``logger=none`` (or debug=fast) makes a logger entry
    with no ``_target_``: say so, instead of failing later inside Lightning."""
    loggers = cfg.get("logger")
    if not isinstance(loggers, DictConfig):
        if loggers is not None:
            raise ConfigError("logger", loggers, "a mapping of loggers (choose one: logger=wandb)")
        return
    chosen = logger_choice()
    for key in loggers:
        name = str(key)
        entry = loggers.get(name)
        if isinstance(entry, DictConfig) and "_target_" not in entry:
            raise LoggerOffError(
                f"logger.{name} is set but the logger group is {chosen}: choose that logger "
                f"with logger={name}, or drop the logger.{name} overrides."
            )


def logger_choice() -> str:
    from hydra.core.hydra_config import HydraConfig

    try:
        choice = HydraConfig.get().runtime.choices.get("logger")
    except ValueError:  # no Hydra run (the compose API without HydraConfig)
        choice = None
    return str(choice) if choice is not None else "none"


def open_nodes(cfg: DictConfig, path: str = "") -> list[tuple[str, DictConfig, type]]:
    """(path, node, schema) of every node of an OPEN schema."""
    found = []
    for key in cfg:
        name = str(key)
        if not path and name == "hydra":
            continue
        child = cfg._get_node(str(name))
        if isinstance(child, DictConfig) and not child._is_none() and not child._is_missing():
            schema = schema_of(child)
            if schema in OPEN:
                found.append((f"{path}{name}", child, schema))
            found.extend(open_nodes(child, f"{path}{name}."))
    return found


def check_target_arguments(cfg: DictConfig) -> None:
    """Every key of an open node (trainer, scheduler) that its schema does not declare is an
    argument of its ``_target_``: ``trainer.max_epoch=3`` stops here, not inside Lightning."""
    from hydra.utils import get_object

    for path, node, schema in open_nodes(cfg):
        declared = {f.name for f in dataclasses.fields(schema)}
        declared |= (
            {f.name for f in dataclasses.fields(EXTRAS[schema])} if schema in EXTRAS else set()
        )
        unknown = [str(k) for k in node if str(k) not in declared | HYDRA_KEYS | OODLAB_KEYS]
        if not unknown or "_target_" not in node:
            continue
        try:
            target = get_object(str(node._target_))
            params = inspect.signature(target).parameters
        except Exception:  # an unimportable target fails with its own message when built
            continue
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            continue
        for name in unknown:
            if name not in params:
                raise UnknownNameError(
                    f"key of {path} (an argument of {node._target_})",
                    name,
                    [p for p in params if p != "self"],
                    hint=f"Write {path}.<argument>=VALUE with one of its arguments.",
                )
