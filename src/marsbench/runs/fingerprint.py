"""Fingerprints that say which code, which packages and which data made a run record.

- `code_fingerprint()`: sha256 over the relative path and bytes of every source and data file of
  the installed ``marsbench`` package. It changes whenever the code that runs changes, committed
  or not, so it is the identity `ResultsStore.stale` compares. The git commit is recorded beside it
  (`git_commit()`), not mixed in: committing an unchanged tree must not make every record stale,
  and outside a git checkout (a pip install) there is no commit at all.
- `package_versions()`: Python and the packages a result depends on, read from package metadata
  (no heavy imports).
- `fingerprint_files()`: content identity of a set of data files (the bytes, by the memoised
  blake2b digests of `marsbench.sources.content_hash`, the one place data files are hashed).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # src/marsbench
# Files whose content can change a result: code, and the package data setuptools ships.
CODE_SUFFIXES = (".py", ".json", ".yaml", ".yml", ".csv")
VERSIONED_PACKAGES = ("torch", "torchvision", "timm", "numpy", "scikit-learn", "marsbench")


def canonical_json(obj: Any) -> str:
    """One text per value: sorted keys, no spaces, ASCII, floats normalised by `normalise_float`."""
    return json.dumps(_canonical(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(canonical_json(obj).encode("ascii")).hexdigest()


def normalise_float(x: float) -> float:
    """Round to 12 significant digits so 0.1 + 0.2 and 0.3 hash alike; -0.0 becomes 0.0."""
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"cannot fingerprint a non-finite number: {x!r}")
    return float(f"{x:.12g}") + 0.0


def exact_int(value: Any) -> int | None:
    """The integer ``value`` denotes exactly: an int, an integral float, or text such as
    ``"42"``, ``"1e3"`` or ``"256.0"``; None where it is not one. Digits are read by ``int``,
    never through a float (``"99999999999999999999"`` stays itself; through a float it became
    1e20), and a float beyond 2**53, where floats skip integers, is not taken as one."""
    if isinstance(value, bool):
        return None
    if hasattr(value, "__index__"):
        return int(value.__index__())
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return int(x) if x.is_integer() and abs(x) < 2**53 else None


def _canonical(obj: Any) -> Any:
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return normalise_float(obj)
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalar
        return _canonical(obj.item())
    raise TypeError(f"cannot fingerprint a {type(obj).__name__}: {obj!r}")


@lru_cache(maxsize=4)
def code_fingerprint(package_dir: str | os.PathLike = PACKAGE_DIR) -> str:
    """sha256 of every code/data file under the package, by relative path and content.

    Cached per process: the source of a running program does not change under it.
    """
    root = Path(package_dir)
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.suffix in CODE_SUFFIXES and p.is_file()
                       and "__pycache__" not in p.parts):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


@lru_cache(maxsize=4)
def git_commit(path: str | os.PathLike = PACKAGE_DIR) -> str | None:
    """HEAD commit of the git checkout holding ``path``; None outside one or without git.

    A ``+dirty`` suffix marks uncommitted changes to tracked files.
    """
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=path, capture_output=True, text=True,
                                 timeout=10, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "--verify", "HEAD")
    if not commit:
        return None
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return commit + ("+dirty" if dirty else "")


def package_versions(packages: Iterable[str] = VERSIONED_PACKAGES) -> dict[str, str | None]:
    """``{"python": ..., package: version or None}``; adds ``cuda`` when torch is already loaded."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    torch = sys.modules.get("torch")  # never import torch just to ask
    if torch is not None:
        out["cuda"] = getattr(getattr(torch, "version", None), "cuda", None)
    return out


def fingerprint_files(
    paths: Iterable[str | os.PathLike],
    *,
    root: str | os.PathLike | None = None,
) -> str:
    """Content identity of a set of data files, as ``"content:<sha256 hex>"``.

    Each file contributes its path relative to ``root`` (so moving or copying a dataset folder
    keeps its fingerprint; ``root`` defaults to the common parent) and the blake2b digest of its
    bytes. Digests are memoised per file (see `marsbench.sources.content_hash`), so checking a
    large set again costs a ``stat`` per file, yet any change of content is seen: there is no
    mode that trusts names, sizes or times alone.
    """
    from ..sources.content_hash import file_digests

    files = sorted({Path(p).resolve() for p in paths})
    if not files:
        raise ValueError("fingerprint_files got no files")
    base = Path(root).resolve() if root is not None else Path(os.path.commonpath(files))
    if base.is_file():
        base = base.parent
    rels = []
    for path in files:
        try:
            rels.append(path.relative_to(base).as_posix())
        except ValueError:
            raise ValueError(f"data file {path} is not under root {base}") from None
    h = hashlib.sha256()
    for rel, digest in zip(rels, file_digests(files)):
        h.update(f"{rel}\0{digest}\n".encode())
    return f"content:{h.hexdigest()}"
