"""`marsbench env`: versions, devices, and every folder and default marsbench uses here.

Also `stdout_is_terminal`, the one test the listing commands and `run` use to choose between
rich tables / bars (a terminal) and plain, pipe-friendly lines (a file, a pipe, nohup, SLURM).

Each value is read from the function the code itself uses (`sources.cache.data_root`,
`sources.content_hash.cache_root`, `training.run.feature_cache_dir`, ...), never recomputed
here, so what `env` shows is what a run would use. Nothing heavy is imported before the command
runs: ``marsbench --help`` does not import torch.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable

import typer

EPILOG = ("Examples:\n\n"
          "marsbench env\n\n"
          "marsbench env --json | jq -r .feature_cache\n\n"
          "MARSBENCH_CACHE=/scratch/$USER/marsbench marsbench env")


def stdout_is_terminal() -> bool:
    """Whether standard output is an interactive terminal (rich tables and bars) rather than a
    file or pipe (plain lines, flushed as they come)."""
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):  # no stdout, or a closed one
        return False


@dataclass(frozen=True)
class Entry:
    """One line of `marsbench env`: ``key: value``, and what sets it (an environment variable,
    or None where only an option does)."""

    key: str
    value: Any
    variable: str | None = None
    note: str | None = None

    @property
    def from_variable(self) -> bool:
        return bool(self.variable) and bool(os.environ.get(self.variable, "").strip())

    def line(self) -> str:
        how = []
        if self.variable:
            how.append(f"from {self.variable}" if self.from_variable
                       else f"default; set with {self.variable}")
        if self.note:
            how.append(self.note)
        return f"{self.key}: {_text(self.value)}" + (f"  [{'; '.join(how)}]" if how else "")


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _safe(fn: Callable[[], Any]) -> Any:
    """The value, or ``invalid: <one-line error>`` when a setting is bad (a diagnostic command
    reports a broken setting beside the others rather than stopping at it)."""
    from ..errors import MarsbenchError

    try:
        return fn()
    except (MarsbenchError, ValueError, OSError) as exc:
        return "invalid: " + " ".join(str(exc).split())


def environment() -> list[Entry]:
    """Every entry of `marsbench env`, in the order printed."""
    from .. import __version__

    entries = [
        Entry("marsbench", __version__),
        Entry("python", f"{platform.python_version()} ({sys.executable})"),
        Entry("platform", platform.platform()),
    ]
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is a dependency
        return entries + [Entry("torch", f"not importable: {exc}")]
    from ..training.run import pick_device

    cuda = torch.cuda.is_available()
    mps_backend = getattr(torch.backends, "mps", None)
    device = _safe(lambda: pick_device("auto"))
    entries += [
        Entry("torch", torch.__version__),
        Entry("cuda", (f"yes ({torch.cuda.device_count()} device(s), "
                       f"{torch.cuda.get_device_name(0)}; CUDA {torch.version.cuda})")
              if cuda else "no"),
        Entry("mps", bool(mps_backend is not None and mps_backend.is_available())),
        Entry("device_auto", device, note="what --device auto picks"),
    ]
    return entries + _paths(None if isinstance(device, str) else device)


def _paths(device) -> list[Entry]:
    from ..models.weights import OFFLINE_ENV, downloads_allowed, torch_hub_checkpoints_dir
    from ..sources.cache import DATA_ENV, data_root
    from ..sources.content_hash import CACHE_ENV, cache_root, memo_path
    from ..training.engine import default_workers
    from ..training.loggers import LOG_DIR_ENV, LOGGER_ENV, chosen_logger
    from ..training.pixels import ENV as PIXEL_ENV, pixel_cache_budget, pixel_cache_dir
    from ..training.run import feature_cache_dir
    from .run import DEFAULT_STORE
    from .vlm import default_cache as vlm_cache

    return [
        Entry("data_root", _safe(lambda: data_root(None)), DATA_ENV,
              note="--root overrides it"),
        Entry("cache", _safe(cache_root), CACHE_ENV),
        Entry("feature_cache", _safe(feature_cache_dir), CACHE_ENV),
        Entry("pixel_cache", _safe(pixel_cache_dir), CACHE_ENV),
        Entry("pixel_cache_budget", _safe(lambda: _budget(pixel_cache_budget())), PIXEL_ENV),
        Entry("content_hash_memo", _safe(memo_path), CACHE_ENV),
        Entry("torch_hub_checkpoints", _safe(torch_hub_checkpoints_dir), "TORCH_HOME"),
        Entry("hf_hub_cache", _safe(_hf_hub_cache), _hf_variable()),
        Entry("vlm_response_cache", _safe(vlm_cache), CACHE_ENV,
              note="--cache overrides it"),
        Entry("results_store", Path.cwd() / DEFAULT_STORE,
              note=f"{DEFAULT_STORE} in the working folder; --store overrides it; "
                   "no environment variable"),
        Entry("loader_workers",
              _safe(lambda: default_workers(device)) if device is not None
              else "unknown (no usable device)", "MARSBENCH_WORKERS",
              note=f"on {device}" if device is not None else None),
        Entry("downloads", "allowed" if downloads_allowed() else "off", OFFLINE_ENV),
        Entry("logger", _safe(lambda: chosen_logger()[0]), LOGGER_ENV,
              note="--logger overrides it"),
        Entry("log_dir", _safe(lambda: chosen_logger()[1]), LOG_DIR_ENV,
              note="--log-dir overrides it"),
    ]


def _budget(value: int | None) -> str:
    if value is None:
        return "off"
    return f"{value} bytes ({value / 2**30:.1f} GiB)"


def _hf_hub_cache() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _hf_variable() -> str:
    """HF_HUB_CACHE when set, else HF_HOME (the hub cache is ``$HF_HOME/hub``)."""
    return "HF_HUB_CACHE" if os.environ.get("HF_HUB_CACHE") else "HF_HOME"


def env_command(
    as_json: Annotated[bool, typer.Option(
        "--json", help="one JSON object: the values, and which environment variable sets "
                       "each")] = False,
) -> None:
    """Show versions, devices, caches, data root and defaults, each with what sets it.

    One ``key: value`` line each: marsbench, python and torch versions, CUDA / MPS and the
    device ``--device auto`` picks, the data root, the cache folders (features, pixels, the
    content-hash memo, torch hub and Hugging Face weights, VLM responses), the default results
    store and the loader workers, each with the environment variable that sets it."""
    entries = environment()
    if as_json:
        data: dict[str, Any] = {e.key: _json_value(e.value) for e in entries}
        data["variables"] = {e.key: {"name": e.variable, "set": e.from_variable}
                             for e in entries if e.variable}
        typer.echo(json.dumps(data, indent=2))
        return
    for entry in entries:
        typer.echo(entry.line())


def _json_value(value: Any) -> Any:
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    return str(value)


# -- shared by the listing commands (`datasets list`, `models list`) ------------------------------

_WILDCARDS = "*?["


def match_patterns(names: list[str], patterns: list[str] | None, *, what: str, where: str,
                   everything: list[str] | None = None) -> list[str]:
    """The ``names`` matched by any of ``patterns`` (shell-style, `fnmatch`, case-insensitive,
    whole names: ``'*lite*'``, ``'mb-*_seg'``), in their order; all of them when no pattern is
    given. A pattern that matches none is an `OptionError` (one line, exit 2) with a hint:
    a close pattern that matches, ``*word*`` for a bare word, or the other filter that hid the
    names it matches (``everything``: the names before that filter, e.g. ``--task``)."""
    import fnmatch

    from ..errors import OptionError

    if not patterns:
        return list(names)
    lowered = {name: name.lower() for name in names}
    chosen: set[str] = set()
    for pattern in patterns:
        pat = pattern.lower()
        found = {n for n, low in lowered.items() if fnmatch.fnmatchcase(low, pat)}
        if not found:
            raise OptionError(f"no {what} matches the pattern", where=where, value=pattern,
                              fix=_no_match_hint(pattern, names, everything, what))
        chosen |= found
    return [n for n in names if n in chosen]


def _no_match_hint(pattern: str, names: list[str], everything: list[str] | None,
                   what: str) -> str:
    import difflib
    import fnmatch
    import re

    from ..errors import did_you_mean

    pat = pattern.lower()
    hidden = [n for n in everything or () if n not in names
              and fnmatch.fnmatchcase(n.lower(), pat)]
    if hidden:
        shown = ", ".join(hidden[:5]) + (", ..." if len(hidden) > 5 else "")
        return f"it matches only {what}s of another task ({shown}): drop or change --task"

    def matches(candidate: str) -> bool:
        return any(fnmatch.fnmatchcase(n.lower(), candidate) for n in names)

    if not any(c in pattern for c in _WILDCARDS) and matches(f"*{pat}*"):
        return f"a pattern matches whole names: did you mean '*{pat}*'?"
    core = max(re.split(r"[*?\[\]]+", pat), key=len)  # the longest literal part
    if core:
        words = sorted({w for n in names for w in re.split(r"[_\-.:/]+", n.lower()) if w})
        close = [pat.replace(core, w, 1) for w in
                 difflib.get_close_matches(core, words, n=5, cutoff=0.6)]
        close = list(dict.fromkeys(c for c in close if matches(c)))[:3]
        if close:
            return "did you mean " + " or ".join(repr(c) for c in close) + "?"
    return did_you_mean(core or pat, names).replace("choose from", f"{what}s are")


def print_rows(header: list[str], rows: list[list[Any]]) -> None:
    """Tab-separated rows under a header line, for pipes and files: every value whole (tabs
    and line breaks inside a value become spaces)."""
    def cell(value: Any) -> str:
        return " ".join(str(value).split())

    for row in [header, *rows]:
        typer.echo("\t".join(cell(v) for v in row))
