"""Starting weights for a backbone: timm's published weights, or a local file.

timm's weights are looked up in the Hugging Face cache first and loaded from the file found
there, so a machine without network never makes a network call for cached weights. Weights
that are not cached are downloaded when the machine is online (with Hugging Face's timeouts);
offline, or when the download fails, one line names the model and the ways to get them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from oodlab.errors import ConfigError, MissingWeightsError

log = logging.getLogger(__name__)

#: the files of a timm weights repository on the Hugging Face hub, in timm's order
HUB_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


def _missing_weights(name: str, reason: str) -> MissingWeightsError:
    return MissingWeightsError(name, reason, hub_offline=hub_offline())


def hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").lower() in (
        "1",
        "true",
        "yes",
    )


def reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether ``url``'s host accepts a connection within ``timeout`` seconds. Without network,
    Hugging Face's client retries each file for over a minute; this answers in seconds. Behind a
    proxy a direct connection says nothing, so the answer is yes."""
    import socket
    from urllib.parse import urlparse

    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    parts = urlparse(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def pretrained_file(name: str) -> str:
    """A local file holding timm's pretrained weights for ``name`` (``resnet18`` or a tagged
    ``resnet18.a1_in1k``), downloading it only when it is not cached and the hub is reachable."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        raise ConfigError(
            "model.pretrained", True, f"false: timm publishes no pretrained weights for {name}"
        )
    if cfg.file:
        return str(cfg.file)
    if cfg.hf_hub_id:
        from huggingface_hub import hf_hub_download, try_to_load_from_cache

        files = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else HUB_FILES
        for filename in files:
            cached = try_to_load_from_cache(cfg.hf_hub_id, filename)
            if isinstance(cached, str):
                return cached
        if hub_offline():
            raise _missing_weights(
                name, f"offline (HF_HUB_OFFLINE=1) and {cfg.hf_hub_id} is not in the cache"
            )
        from huggingface_hub import constants

        if not reachable(constants.ENDPOINT):
            raise _missing_weights(
                name,
                f"{cfg.hf_hub_id} is not in the cache and {constants.ENDPOINT} cannot be reached",
            )
        errors = []
        for filename in files:
            try:
                return hf_hub_download(cfg.hf_hub_id, filename)
            except Exception as exc:  # no network, no such file, a proxy: try the next file
                errors.append(f"{filename}: {type(exc).__name__}")
        raise _missing_weights(name, f"downloading {cfg.hf_hub_id} failed ({'; '.join(errors)})")
    url = str(cfg.url)  # a pretrained cfg with neither file nor hub id has a URL (checked above)
    cached_url = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    if cached_url.is_file():
        return str(cached_url)
    if hub_offline() or not reachable(url):
        raise _missing_weights(
            name, f"offline and {url} is not in torch's hub cache ({cached_url.parent})"
        )
    try:
        torch.hub.download_url_to_file(url, str(cached_url), progress=False)
    except Exception as exc:
        raise _missing_weights(name, f"downloading {url} failed ({type(exc).__name__})") from None
    return str(cached_url)


def read_state_dict(
    path: str | Path, prefix: str | None = None, key: str = "model.weights"
) -> dict[str, Tensor]:
    """Tensors of a ``.safetensors`` or torch file (``{"state_dict": ...}`` and ``{"model": ...}``
    wrappers unwrapped), with ``prefix`` removed from the keys that start with it."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(key, str(path), "the path of an existing .pth, .pt or .safetensors file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(
            key, str(path), f"a readable weights file ({type(exc).__name__}: {exc})"
        ) from None
    for key in ("state_dict", "model", "module"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ConfigError(key, str(path), "a file holding a state dict (names -> tensors)")
    if prefix:
        state = {k.removeprefix(prefix): v for k, v in state.items()}
    return dict(state)


def load_weights(
    model: nn.Module, path: str | Path, prefix: str | None = None, key: str = "model.weights"
) -> None:
    """Load a model's weights from a local file; keys the model lacks (an old classifier) are
    dropped, and every key of the model must be found with its shape. ``key`` names the
    config key in errors."""
    state = read_state_dict(path, prefix, key)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
    if missing or wrong:
        problem = (
            f"{len(missing)} of the model's {len(own)} tensors missing (e.g. {missing[:3]})"
            if missing
            else ""
        )
        if wrong:
            k = wrong[0]
            problem += (
                "; " if problem else ""
            ) + f"{k} has shape {tuple(state[k].shape)}, the model needs {tuple(own[k].shape)}"
        hint = (
            f" (strip a key prefix with {key}_prefix, e.g. {next(iter(state), '')!r})"
            if missing
            else ""
        )
        raise ConfigError(key, str(path), f"weights of this model: {problem}{hint}")
    dropped = [k for k in state if k not in own]
    model.load_state_dict({k: state[k] for k in own})
    log.info(
        "loaded %d tensors from %s%s",
        len(own),
        path,
        f"; ignored {len(dropped)} (e.g. {dropped[:2]})" if dropped else "",
    )
