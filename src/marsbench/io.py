"""Atomic file writes (a reader sees the old file or the whole new one, never a torn one), a
JSON memo file, and the SHA-256 of a file (the identity of weights and checkpoints).

Every file marsbench writes for others to read (predictions, subset lists, cached features,
reports, downloads, ...) goes through `atomic_path` or its two shorthands:

- the data is written to a temporary file *in the destination's folder* (so the final rename
  stays on one filesystem), named by ``tempfile.mkstemp``: unique per process and per thread,
  so two workers writing the same destination at once never share a temporary file;
- the temporary file is flushed to disk (``fsync``), then renamed over the destination with
  ``os.replace`` (atomic on POSIX and Windows), then the folder is synced so the rename itself
  survives a power loss;
- on any failure (disk full, permission, an exception in the writer) the temporary file is
  removed and the destination is left as it was.

The temporary name starts with ``.`` and ends with ``.tmp``: hidden from globbing readers, and
easy to spot if a process is killed between the write and the rename.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "json_memo", "sha256_file"]


@contextlib.contextmanager
def atomic_path(path: str | Path, *, mkdir: bool = True, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit it replaces ``path`` atomically.

    Write the whole file to the yielded path (``torch.save(x, tmp)``, ``frame.to_csv(tmp)``,
    ``image.save(tmp, format=...)`` - give the format where the writer guesses it from the
    suffix, which is ``.tmp``). ``mkdir`` creates the destination's folders first.
    ``fsync=False`` skips the syncs (still atomic for readers, not across a power loss): for
    many small files that can be rewritten, such as one predicted mask per image.
    """
    path = Path(path)
    if mkdir:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if fsync:
            _fsync_file(tmp)
        os.chmod(tmp, _default_mode())  # mkstemp makes 0600; give the usual umask mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if fsync:
        _fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see `atomic_path`); returns ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
    return path


def atomic_write_text(path: str | Path, text: str, *, encoding: str = "utf-8",
                      newline: str | None = None) -> Path:
    """Write ``text`` to ``path`` atomically (see `atomic_path`); returns ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", encoding=encoding, newline=newline) as fh:
        fh.write(text)
    return path


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    if sys.platform == "win32":  # directories cannot be opened for fsync there
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory; the rename is still atomic
    finally:
        os.close(fd)


def _default_mode() -> int:
    """0666 less the process umask (read without changing it where the OS allows)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no /proc: read it by setting it (briefly) and putting it back
    os.umask(mask)
    return 0o666 & ~mask


_MEMO_LOCK = threading.Lock()


def json_memo(path: str | Path, key: str, compute: Callable[[], Any]) -> tuple[Any, bool]:
    """``(value, True)`` where the JSON file ``path`` holds ``key``, else ``(compute(), False)``
    with the value stored there (atomically; never None). A file that cannot be read counts as
    empty; one that cannot be written is left as it is (the value is computed again next time)."""
    path = Path(path)

    def read() -> dict:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return {}

    with _MEMO_LOCK:
        known = read()
        if key in known:
            return known[key], True
    value = compute()
    if value is None:
        return None, False
    with _MEMO_LOCK:
        known = read()  # another writer may have added keys meanwhile
        known[key] = value
        try:
            atomic_write_text(path, json.dumps(known, indent=1, sort_keys=True))
        except OSError:
            pass  # a read-only cache
    return value, False


def sha256_file(path: str | Path) -> str:
    """The SHA-256 hex digest of a file's bytes: the identity of a weights file or checkpoint
    (the Hugging Face Hub names LFS blobs by it). Data files use `sources.content_hash`."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
