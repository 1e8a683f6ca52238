"""Finding, loading and checking model weights, without network surprises or unsafe unpickling.

Published weights are looked up in their cache (the torch hub ``checkpoints`` folder, or the
Hugging Face cache for timm) *before* any download is tried; with ``MARSBENCH_OFFLINE=1`` no
download is tried at all. Anything missing or unloadable raises `WeightsUnavailableError`
naming the file or URL and where to put it: there is never a silent random init.

A user's own checkpoint (``--weights PATH``) is read with ``torch.load(weights_only=True)`` or
safetensors, so it can hold tensors only, never arbitrary pickled objects.
"""

from __future__ import annotations

import os
import socket
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import MarsbenchError
from ..io import sha256_file

OFFLINE_ENV = "MARSBENCH_OFFLINE"
CHECKPOINT_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module", "net", "weights")
COMMON_PREFIXES = ("module.", "_orig_mod.", "model.", "net.", "encoder.", "backbone.")


class WeightsUnavailableError(MarsbenchError, RuntimeError):
    """Published weights are missing or cannot be loaded; the message says how to get them."""


class WeightsLoadError(MarsbenchError, RuntimeError):
    """A user checkpoint cannot be read or does not fit the model."""


def downloads_allowed() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in {"1", "true", "yes", "on"}


def host_reachable(url: str, timeout: float = 5.0) -> bool:
    """Whether a TCP connection to the URL's host opens within ``timeout`` seconds; checked
    before a download so that an offline machine fails at once (libraries retry for minutes)."""
    from urllib.parse import urlsplit

    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")):
        return True  # behind a proxy a direct connection proves nothing; let the library try
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def torch_hub_checkpoints_dir() -> Path:
    """Where torch/torchvision keep downloaded weights (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def fetch_url_weights(url: str, what: str) -> dict[str, torch.Tensor]:
    """The state dict published at ``url``, from the torch hub cache or, if allowed, downloaded
    there first. ``what`` names the model in errors."""
    directory = torch_hub_checkpoints_dir()
    path = directory / Path(url).name
    if not path.is_file():
        advice = (
            f"download {url} and put it at {path} (the torch hub cache; set TORCH_HOME to move "
            "it), or pass your own checkpoint with --weights PATH, or use --regime scratch"
        )
        if not downloads_allowed() or not host_reachable(url):
            why = f"downloads are off ({OFFLINE_ENV}=1)" if not downloads_allowed() else (
                f"{url.split('/')[2]} cannot be reached"
            )
            raise WeightsUnavailableError(
                f"{what}: pretrained weights {path.name} are not in the cache and {why}: {advice}"
            )
        directory.mkdir(parents=True, exist_ok=True)
        try:
            hash_prefix = torch.hub.HASH_REGEX.search(path.name)
            torch.hub.download_url_to_file(
                url, str(path), hash_prefix=hash_prefix.group(1) if hash_prefix else None
            )
        except Exception as exc:  # noqa: BLE001 - any network/disk failure means the same thing
            raise WeightsUnavailableError(
                f"{what}: could not download pretrained weights ({type(exc).__name__}: {exc}): "
                f"{advice}"
            ) from exc
    try:
        return read_state_dict(path)
    except WeightsLoadError as exc:
        raise WeightsUnavailableError(
            f"{what}: the cached weights {path} cannot be loaded ({exc}); delete the file and "
            f"download {url} again"
        ) from exc


def check_weights_file(path: str | Path) -> Path:
    """``path`` as a `Path` if it is a readable file; else `WeightsLoadError` saying what it is."""
    path = Path(path).expanduser()
    if path.is_dir():
        inside = sorted(p.name for p in path.iterdir()
                        if p.suffix in (".pt", ".pth", ".bin", ".ckpt", ".safetensors"))[:3]
        raise WeightsLoadError(
            "the weights path is a folder, not a checkpoint file", where=path,
            fix="pass the checkpoint file itself" + (
                f" (e.g. {path / inside[0]})" if inside else " (.pt, .pth or .safetensors)"))
    if not path.exists():
        raise WeightsLoadError("no weights file at this path", where=path,
                               fix="check the --weights path")
    if not path.is_file():
        raise WeightsLoadError("the weights path is not a regular file", where=path,
                               fix="pass a checkpoint file (.pt, .pth or .safetensors)")
    if not os.access(path, os.R_OK):
        raise WeightsLoadError("the weights file cannot be read", where=path,
                               value="permission denied", fix="fix its permissions")
    if path.stat().st_size == 0:
        raise WeightsLoadError(f"weights file {path} is empty (0 bytes)",
                               fix="the save or copy was cut short: save or copy it again")
    return path


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, read safely; unwraps ``{"state_dict": ...}``-style files."""
    path = check_weights_file(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: object = load_file(str(path), device="cpu")
        else:
            with warnings.catch_warnings():  # the error below says it all: one line
                warnings.simplefilter("ignore")
                obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - report every reader failure the same way
        raise WeightsLoadError(
            f"cannot read weights file {path}: {type(exc).__name__}: {str(exc).splitlines()[0]}. "
            "Only plain tensors are loaded (weights_only=True); re-save the file with "
            "torch.save(model.state_dict(), PATH) or as .safetensors"
        ) from exc
    return _unwrap(obj, path)


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    for _ in range(3):  # e.g. {"model": {"state_dict": {...}}}
        if isinstance(obj, Mapping) and not _is_state_dict(obj):
            inner = next((obj[k] for k in CHECKPOINT_WRAPPER_KEYS if k in obj), None)
            if isinstance(inner, Mapping):
                obj = inner
                continue
        break
    if not isinstance(obj, Mapping) or not _is_state_dict(obj):
        raise WeightsLoadError(
            f"{path} holds no state dict: expected a mapping of names to tensors, or one under "
            f"one of the keys {', '.join(CHECKPOINT_WRAPPER_KEYS)}"
        )
    return {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _is_state_dict(obj: Mapping) -> bool:
    return bool(obj) and sum(isinstance(v, torch.Tensor) for v in obj.values()) >= len(obj) / 2


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a weights file (`WeightsLoadError` if it is a folder or missing)."""
    return sha256_file(check_weights_file(path))


@dataclass
class LoadReport:
    """What loading a checkpoint did; ``missing`` lists model keys left as they were."""

    path: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shape_mismatch: list[str] = field(default_factory=list)
    stripped_prefix: str = ""

    def summary(self) -> str:
        parts = [f"{self.path}: loaded {len(self.loaded)} tensors"]
        if self.stripped_prefix:
            parts.append(f"after stripping prefix {self.stripped_prefix!r}")
        for name in ("missing", "unexpected", "shape_mismatch"):
            keys = getattr(self, name)
            if keys:
                shown = ", ".join(keys[:5]) + (f" ... (+{len(keys) - 5})" if len(keys) > 5 else "")
                parts.append(f"{name.replace('_', ' ')} {len(keys)}: {shown}")
        return "; ".join(parts)


def match_keys(
    source: Mapping[str, torch.Tensor], aliases: Mapping[str, str]
) -> tuple[dict[str, str], str]:
    """Map checkpoint keys onto model keys through ``aliases`` (accepted name -> model key),
    after stripping whichever run of `COMMON_PREFIXES` matches the most keys."""
    best: tuple[dict[str, str], str] = ({}, "")
    for prefix in _prefix_candidates(source):
        mapping = {}
        for key in source:
            name = key[len(prefix):] if key.startswith(prefix) else key
            if name in aliases:
                mapping[key] = aliases[name]
        if len(mapping) > len(best[0]):
            best = (mapping, prefix)
    return best


def _prefix_candidates(source: Mapping[str, torch.Tensor]) -> list[str]:
    found = [""]
    for key in source:
        prefix = ""
        while True:
            step = next((p for p in COMMON_PREFIXES if key.startswith(prefix + p)), None)
            if step is None:
                break
            prefix += step
            if prefix not in found:
                found.append(prefix)
    return found
