"""Hydra's instantiate, with the user's own mistakes surfaced unwrapped.

Hydra wraps every exception raised by a ``_target_`` in an InstantiationException whose text
is a traceback summary; an OodlabError inside it is re-raised as itself so the caller (and the
user) sees one clear line.
"""

from __future__ import annotations

from typing import Any

import hydra.utils
from hydra.errors import InstantiationException

from oodlab.errors import find_user_error


def instantiate(config: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return hydra.utils.instantiate(config, *args, **kwargs)
    except InstantiationException as exc:
        user_error = find_user_error(exc)
        if user_error is not None:
            raise user_error from None
        raise
