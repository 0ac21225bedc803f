"""The schema of the ``eval`` config group, stored in Hydra's ConfigStore as ``eval/schema``.

Hydra imports this package at start-up (its plugin discovery scans ``hydra_plugins``), for the
command lines and the compose API alike, so ``conf/eval/default.yaml`` can list ``schema`` in
its defaults. It imports nothing heavy: ``--help`` stays fast.

``eval.params`` and ``eval.grids`` map a score name to its keys. Their names and defaults live
in the score classes alone (``spec`` in oodlab.scores), so the schema leaves both mappings open
and a struct-mode config still accepts ``eval.params.odin.temperature=1000`` without ``+``.
oodlab checks the names and keys before any data loads (oodlab.evaluation.selection): an
unknown score lists the registered ones, an unknown key lists the score's keys.
"""

# key() returns a dataclasses.field, as field() does
# ruff: noqa: RUF009
from dataclasses import dataclass, field, fields
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.oodlab_config.checks import POSITIVE_INT, ListOf, OneOf, Text, key
from hydra_plugins.oodlab_config.schemas import GROUP_SCHEMAS, OPEN, Callbacks


@dataclass
class CacheSchema:
    enabled: bool = key("read and write the evaluation cache", default=True)
    dir: Any = key("its directory; null = <paths.cache_dir>/outputs", default=None)
    dtype: str = key("the stored dtype", OneOf(("float32", "float16")), default="float32")
    shard_rows: int = key("rows written (and flushed) at a time", POSITIVE_INT, default=65536)


@dataclass
class EvalSchema:
    scores: Any = key(
        "score names, plus `default` for the loss head's own score",
        ListOf(Text(), nonempty=True, what="score names"),
    )
    params: dict[str, dict[str, Any]] = key(
        "{score: {key: value}}: fixed hyperparameters, not searched", default={}
    )
    grids: dict[str, dict[str, Any]] = key(
        "{score: {key: [values]}}: validation grids, replacing the score's default grid",
        default={},
    )
    objective_score: Any = key("the score whose validation FPR95 a sweeper minimises", Text())
    #: the evaluation cache of logits, features and labels
    cache: CacheSchema = field(default_factory=CacheSchema)


def eval_schema() -> DictConfig:
    """:class:`EvalSchema` with ``params`` and ``grids`` open to new keys in struct mode."""
    node = OmegaConf.structured(EvalSchema)
    OmegaConf.set_struct(node.params, False)
    OmegaConf.set_struct(node.grids, False)
    return node


#: groups whose entries a user removes (``~callbacks.progress_bar``): their node is a plain
#: mapping of typed entries, because OmegaConf refuses to delete a field of a structured node
REMOVABLE_ENTRIES: tuple[type, ...] = (Callbacks,)


def group_schema(schema: type) -> DictConfig:
    """``schema`` as a config node; open to undeclared keys when it is one of ``OPEN``."""
    if schema in REMOVABLE_ENTRIES:
        # every field of these schemas has a default_factory: the entry's own schema
        entries = {f.name: f.default_factory for f in fields(schema)}
        return OmegaConf.create(
            {name: OmegaConf.structured(make()) for name, make in entries.items() if callable(make)}
        )
    node = OmegaConf.structured(schema)
    if schema in OPEN:
        OmegaConf.set_struct(node, False)
    return node


def register() -> None:
    """Every schema in Hydra's ConfigStore: ``eval/schema``, and ``schema/<name>`` for each of
    :data:`~hydra_plugins.oodlab_config.schemas.GROUP_SCHEMAS` (a yaml file lists it first in
    its defaults, e.g. ``- /schema/loss/logitnorm@_here_``)."""
    store = ConfigStore.instance()
    store.store(group="eval", name="schema", node=eval_schema(), provider="oodlab")
    for name, schema in GROUP_SCHEMAS.items():
        group, _, option = f"schema/{name}".rpartition("/")
        store.store(group=group, name=option, node=group_schema(schema), provider="oodlab")


register()
