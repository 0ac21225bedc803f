"""The typed config: the one validation pass over a composed config (:mod:`.validate`), the
one-line wording of Hydra's and OmegaConf's composition errors (:mod:`.translate`) and the
generated key reference (:mod:`.docs`). The schemas themselves live in
``hydra_plugins.oodlab_config``, which Hydra imports at start-up. Torch-free."""

from oodlab.config.translate import config_error_line
from oodlab.config.validate import validate_config

__all__ = ["config_error_line", "validate_config"]
