"""Where downloaded datasets live on disk.

Layout under the data root (``data_root()``)::

    <root>/<name>/            Zenodo folder layout (the extracted ``<name>.zip``)
    <root>/hf/<name>/         local copy of the Hugging Face repo ``Mirali33/<name>``
    <root>/.downloads/        partial and finished archives while a download runs

A copy in the Hugging Face layout (``data/<split>-*.parquet``, as the ``datasets`` library
writes it) is also found at ``<root>/<name>/`` (`find_copies`): a repo copied or generated
there is read without naming the source.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import platformdirs

from ..vocab import DOWNLOAD_SOURCES

DATA_ENV = "MARSBENCH_DATA"
Source = Literal["hf", "zenodo"]
_ALIASES = {"hf": "hf", "zenodo": "zenodo", "folder": "zenodo"}


def data_root(root: str | Path | None = None) -> Path:
    """The dataset root: ``root`` if given, else ``$MARSBENCH_DATA``, else the user cache dir."""
    if root is not None and str(root) != "":
        return Path(root).expanduser()
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("marsbench")) / "datasets"


def normalize_source(source: str) -> str:
    """``"hf"`` or ``"zenodo"`` (``"folder"`` is the Zenodo layout's other name)."""
    try:
        return _ALIASES[source]
    except KeyError:
        raise ValueError(
            f"unknown source {source!r}: use one of 'hf', 'zenodo' (or 'folder')"
        ) from None


def local_path(card_name: str, source: str, root: str | Path | None = None) -> Path:
    """Where ``card_name`` lives (or would live) for ``source`` under the data root."""
    base = data_root(root)
    if normalize_source(source) == "hf":
        return base / "hf" / card_name
    return base / card_name


def downloads_dir(root: str | Path | None = None) -> Path:
    """Folder holding archives while they download (``<root>/.downloads``)."""
    return data_root(root) / ".downloads"


def is_present(card_name: str, source: str, root: str | Path | None = None) -> bool:
    """Whether a usable copy seems to be there (data files exist; content is not checked)."""
    path = local_path(card_name, source, root)
    if normalize_source(source) == "hf":
        return any((path / "data").glob("*.parquet")) if (path / "data").is_dir() else False
    return (path / "data").is_dir() or (path / "annotation.csv").is_file()


def find_local(card_name: str, root: str | Path | None = None) -> dict[str, Path]:
    """The local copies of ``card_name`` that exist, as ``{"zenodo"|"hf": path}``."""
    return {s: local_path(card_name, s, root) for s in DOWNLOAD_SOURCES
            if is_present(card_name, s, root)}


def layout(path: str | Path) -> str | None:
    """The layout of a dataset folder: ``"hf"`` (``data/*.parquet`` shards, an HF repo copy,
    which may also carry an annotation.csv), ``"folder"`` (Zenodo: ``annotation.csv`` or a
    ``data/`` folder; the reader reports what is wrong inside) or None."""
    path = Path(path)
    data = path / "data"
    if data.is_dir() and any(data.glob("*.parquet")):
        return "hf"
    if (path / "annotation.csv").is_file() or data.is_dir():
        return "folder"
    return None


def find_copies(card_name: str, root: str | Path | None = None) -> dict[str, Path]:
    """The local copies of ``card_name`` by layout, as ``{"folder"|"hf": path}``.

    ``<root>/<name>`` counts as whichever layout it holds (a Zenodo folder, or an HF repo copy
    put there); ``<root>/hf/<name>`` as an HF copy. Where both hold the HF layout, the one under
    ``hf/`` (where `marsbench datasets download` puts it) is used."""
    base = data_root(root)
    out: dict[str, Path] = {}
    if layout(base / "hf" / card_name) == "hf":
        out["hf"] = base / "hf" / card_name
    kind = layout(base / card_name)
    if kind is not None:
        out.setdefault(kind, base / card_name)
    return out
