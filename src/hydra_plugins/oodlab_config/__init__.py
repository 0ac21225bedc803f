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

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf


@dataclass
class CacheSchema:
    #: read and write the evaluation cache (oodlab.evaluation.cache)
    enabled: bool = True
    #: its directory; null: <paths.cache_dir>/outputs
    dir: Any = None
    #: float32 or float16
    dtype: str = "float32"
    #: rows written (and flushed) at a time
    shard_rows: int = 65536


@dataclass
class EvalSchema:
    #: score names, plus ``default`` for the loss head's own score
    scores: Any = MISSING
    #: {score: {key: value}}: fixed hyperparameters, not searched
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: {score: {key: [values]}}: the validation grid, replacing the score's default grid
    grids: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the score whose validation FPR95 a sweeper minimises
    objective_score: Any = MISSING
    #: the evaluation cache of logits, features and labels
    cache: CacheSchema = field(default_factory=CacheSchema)


def eval_schema() -> DictConfig:
    """:class:`EvalSchema` with ``params`` and ``grids`` open to new keys in struct mode."""
    node = OmegaConf.structured(EvalSchema)
    OmegaConf.set_struct(node.params, False)
    OmegaConf.set_struct(node.grids, False)
    return node


ConfigStore.instance().store(group="eval", name="schema", node=eval_schema(), provider="oodlab")
