"""Decode once: a split's prepared pixels, decoded and resized once, read from a memory map.

Every epoch of every run reads the same images through the same preprocessing; decoding JPEG/PNG
and resizing them again each time is most of a CPU's data-loading work. This cache does it once
per (split content fingerprint, what was prepared, preprocessing) and keeps the ``uint8`` result
on disk, under ``$MARSBENCH_CACHE/pixels/`` (else the user cache dir, beside ``features/``):

- **Identity**: the key hashes the split's content fingerprint (`MarsDataset.fingerprint`: every
  byte of every file the split reads, so an image edited in place is a new key), the split name,
  what was prepared (e.g. ``classification``), the preprocessing's key (input size, band handling,
  interpolation) and the versions of marsbench, Pillow, torch and torchvision (decoders and
  resize kernels). A changed bit anywhere is another entry; stale entries are pruned (below).
- **Layout**: one folder per key holding one raw file per field (``images.bin``: ``uint8``
  ``(N, C, S, S)``; ``targets.bin``, ``masks.bin``, ...) and ``meta.json`` (key, what the entry
  was built from, count, hash of the sample ids, each field's dtype and shape, the marsbench
  version). A field whose samples differ in shape (segmentation at native size) is stored flat
  with its per-sample shapes in ``<field>.shapes.npy``.
- **Built once, atomically**: a builder takes a per-key file lock (so two processes or threads
  asking for the same entry decode it once: the second waits, then reads it), decodes the split
  in one pass through the engine's loader (worker processes decode in parallel), writes a
  temporary folder, syncs it and renames it into place. A reader never sees a partial entry.
- **Checked on open**: ``meta.json`` must match the key, the sample count and ids, and every
  file's size must be exactly what its shape says. A partial or corrupt entry is moved aside and
  rebuilt (a bit flip that keeps the sizes is not detected: the bytes are not re-hashed).
- **Memory stays flat**: readers ``preadv`` each row from the page cache into the batch (no
  memory map: pages a map touched would count in the process's resident memory until it is
  unmapped); nothing is loaded into the process's own memory beyond the batch.

``MARSBENCH_PIXEL_CACHE``: unset (or ``1``/``on``) uses the cache with a 64 GiB disk budget; a
byte count (``200G``, ``500M``) sets the budget; ``0``/``off`` disables it (images are decoded
every epoch, as without it). An entry larger than the budget, or than the free disk space less
1 GiB, is not built (a warning says so and the run decodes as usual). After a build, the least
recently used entries are deleted until the cache fits the budget. A run records which way it
went (``pixel_cache``: ``hit``, ``built``, ``off``; ``unused`` when it read no pixels at all).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

PIXEL_CACHE_VERSION = 1
ENV = "MARSBENCH_PIXEL_CACHE"
DEFAULT_BUDGET = 64 * 2**30
FREE_SPACE_MARGIN = 2**30
STALE_TEMP_S = 24 * 3600  # a temporary folder this old belongs to no live builder
META = "meta.json"
# suffixes of a folder being built (mkdtemp: unique per builder) and of a damaged one set aside
BUILDING, ASIDE = ".building", ".aside"
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_OFF = {"0", "off", "false", "no", "none"}
_ON = {"", "1", "on", "true", "yes"}
_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


def pixel_cache_dir() -> Path:
    from ..sources.content_hash import cache_root

    return cache_root() / "pixels"


def pixel_cache_budget() -> int | None:
    """Disk budget of the cache in bytes, or None when it is off (see the module doc)."""
    text = os.environ.get(ENV, "").strip().lower()
    if text in _OFF:
        return None
    if text in _ON:
        return DEFAULT_BUDGET
    number, unit = text.rstrip("bi"), ""
    if number and number[-1] in _UNITS:
        number, unit = number[:-1], number[-1]
    try:
        value = int(float(number) * _UNITS[unit])
    except (ValueError, OverflowError):
        value = -1
    if value <= 0:
        from ..errors import OptionError

        raise OptionError("not a pixel cache setting", where=f"environment variable {ENV}",
                          value=os.environ.get(ENV), fix="use 1 (on, 64 GiB), 0 (off) or a disk "
                                                         "budget such as 200G")
    return value


def pixel_key(*, fingerprint: str, split: str, what: str, preprocessing: str) -> str:
    """The entry name for one split prepared one way (see the module doc)."""
    import PIL
    import torchvision

    from .. import __version__

    payload = json.dumps({"v": PIXEL_CACHE_VERSION, "data": fingerprint, "split": split,
                          "what": what, "prep": preprocessing, "marsbench": __version__,
                          "pillow": PIL.__version__, "torch": torch.__version__,
                          "torchvision": torchvision.__version__}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def ids_hash(sample_ids: Sequence[str]) -> str:
    h = hashlib.sha256()
    for sid in sample_ids:
        data = str(sid).encode()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Field:
    """One array per sample: its name and the dtype it is stored as."""

    name: str
    dtype: str  # numpy dtype name, e.g. "uint8"


class PixelCache:
    """One opened entry: read-only memory maps, one per field. Picklable (a DataLoader worker
    maps the files again; the arrays never travel)."""

    def __init__(self, path: Path, meta: dict, status: str) -> None:
        self.path, self.meta, self.status = Path(path), meta, status
        self._arrays: dict[str, tuple] | None = None
        self._fds: dict[str, int] = {}  # opened on first read, in each process

    def __len__(self) -> int:
        return int(self.meta["n"])

    def __getstate__(self) -> dict:
        return {"path": self.path, "meta": self.meta, "status": self.status}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"], state["meta"], state["status"])

    @property
    def fields(self) -> list[str]:
        return list(self.meta["fields"])

    def array(self, name: str) -> np.memmap:
        """A fixed-shape field as one read-only ``(N, ...)`` memmap."""
        flat, offsets, shapes = self._open()[name]
        if offsets is not None:
            raise ValueError(f"pixel cache field {name!r} has samples of different shapes")
        return flat

    def row(self, name: str, i: int) -> torch.Tensor:
        """Sample ``i`` of a field, read into a new (writable) tensor."""
        flat, offsets, shapes = self._open()[name]
        if offsets is None:
            out = np.empty(flat.shape[1:], dtype=flat.dtype)
            self._read(name, out, i * out.nbytes)
        else:
            out = np.empty(shapes[i], dtype=flat.dtype)
            self._read(name, out, int(offsets[i]) * flat.dtype.itemsize)
        return torch.from_numpy(out)

    def rows(self, name: str, indices: Sequence[int]) -> torch.Tensor:
        """Samples ``indices`` of a fixed-shape field as one new batch, read row by row."""
        array = self.array(name)
        out = np.empty((len(indices), *array.shape[1:]), dtype=array.dtype)
        row_bytes = out[:1].nbytes
        for j, i in enumerate(indices):
            self._read(name, out[j:j + 1], int(i) * row_bytes)  # a view (out[j] of a 1-D
            # field would be a copy)
        return torch.from_numpy(out)

    def _read(self, name: str, out: np.ndarray, offset: int) -> None:
        """Fill ``out`` with the field file's bytes at ``offset``. With ``preadv`` (POSIX) the
        bytes come straight from the page cache into ``out``: the pages read are the kernel's
        (reclaimable), never the process's own, so a pass over 50,000 images keeps the resident
        memory flat; a memory map would count every page it touched. Elsewhere: the map."""
        if out.nbytes == 0:
            return
        if not hasattr(os, "preadv"):
            flat = self._open()[name][0].reshape(-1)
            start = offset // out.itemsize
            out.reshape(-1)[:] = flat[start:start + out.size]
            return
        fd = self._fds.get(name)
        if fd is None:
            fd = self._fds[name] = os.open(self.path / f"{name}.bin", os.O_RDONLY)
        view = memoryview(out.reshape(-1)).cast("B")
        done = 0
        while done < len(view):  # a large read may come back in parts
            got = os.preadv(fd, [view[done:]], offset + done)
            if got <= 0:
                raise OSError(f"pixel cache {self.path / (name + '.bin')}: file ends at byte "
                              f"{offset + done}; delete the entry to rebuild it")
            done += got

    def __del__(self) -> None:
        for fd in getattr(self, "_fds", {}).values():
            with contextlib.suppress(OSError):
                os.close(fd)

    def _open(self) -> dict[str, tuple]:
        if self._arrays is None:
            arrays = {}
            n = len(self)
            for name, spec in self.meta["fields"].items():
                dtype = np.dtype(spec["dtype"])
                path = self.path / f"{name}.bin"
                if spec.get("shape") is not None:
                    shape = (n, *spec["shape"])
                    flat = (np.memmap(path, dtype=dtype, mode="r", shape=shape)
                            if spec["nbytes"] else np.zeros(shape, dtype))
                    arrays[name] = (flat, None, None)
                else:
                    shapes = np.load(self.path / f"{name}.shapes.npy")
                    offsets = np.concatenate([[0], np.cumsum(np.prod(shapes, axis=1))])
                    flat = (np.memmap(path, dtype=dtype, mode="r") if spec["nbytes"]
                            else np.zeros(0, dtype))
                    arrays[name] = (flat, offsets, [tuple(int(v) for v in s) for s in shapes])
            self._arrays = arrays
        return self._arrays


def open_or_build(key: str, samples: Dataset, fields: Sequence[Field], *,
                  sample_ids: Sequence[str], describe: dict | None = None,
                  cache_dir: Path | None = None, workers: int | None = None,
                  batch_size: int = 32) -> PixelCache | None:
    """The cached entry ``key``, built from ``samples`` (``samples[i]`` is a tuple of one tensor
    per field) if absent or damaged. None when the cache is off, or the entry would not fit the
    budget or the disk (a warning says which), or cannot be written: decode as usual then.
    ``status`` of the returned cache: ``"hit"`` or ``"built"``."""
    budget = pixel_cache_budget()
    if budget is None or len(samples) == 0:
        return None
    root = Path(cache_dir) if cache_dir is not None else pixel_cache_dir()
    expected = {"key": key, "n": len(samples), "ids": ids_hash(sample_ids),
                "fields": [f.name for f in fields]}
    cache = _open_valid(root / key, expected)
    if cache is not None:
        return cache
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _warn(f"pixel cache folder {root} cannot be created ({exc}); decoding every epoch")
        return None
    with _build_lock(root, key):
        cache = _open_valid(root / key, expected)  # another builder may have finished it
        if cache is not None:
            return cache
        _discard(root / key)  # partial or corrupt: moved aside, rebuilt
        try:
            meta = _build(root, key, samples, fields, expected, describe or {}, budget,
                          workers=workers, batch_size=batch_size)
        except _Skip as skip:
            _warn(str(skip))
            return None
    if meta is None:
        return None
    _prune(root, budget, keep=key)
    return PixelCache(root / key, meta, "built")


def summarise(statuses: Iterable[str]) -> str:
    """One word for a run's splits: ``built`` if any split was built, else ``off`` if any was
    not cached, else ``hit``; ``unused`` when no split read pixels."""
    statuses = list(statuses)
    if not statuses:
        return "unused"
    for word in ("built", "off"):
        if word in statuses:
            return word
    return "hit"


# -- internals ---------------------------------------------------------------------------------

class _Skip(Exception):
    """The entry is not built (too large, disk full, unwritable); the message says why."""


def _warn(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def _open_valid(path: Path, expected: dict) -> PixelCache | None:
    """The entry at ``path`` if it is whole and is what ``expected`` says; else None."""
    try:
        meta = json.loads((path / META).read_text())
        if (meta.get("version") != PIXEL_CACHE_VERSION or meta.get("key") != expected["key"]
                or meta.get("n") != expected["n"] or meta.get("ids") != expected["ids"]
                or list(meta.get("fields", {})) != expected["fields"]):
            return None
        n = meta["n"]
        for name, spec in meta["fields"].items():
            itemsize = np.dtype(spec["dtype"]).itemsize
            size = (path / f"{name}.bin").stat().st_size
            if size != spec["nbytes"]:
                return None
            if spec.get("shape") is not None:
                if n * int(np.prod(spec["shape"], dtype=np.int64)) * itemsize != size:
                    return None
            else:
                shapes = np.load(path / f"{name}.shapes.npy")
                if shapes.shape[0] != n or int(np.prod(shapes, axis=1).sum()) * itemsize != size:
                    return None
        cache = PixelCache(path, meta, "hit")
        cache._open()  # maps every file now: a damaged entry is found here, not in a worker
        with contextlib.suppress(OSError):
            os.utime(path / META)  # last use, for pruning
        return cache
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


@contextlib.contextmanager
def _build_lock(root: Path, key: str) -> Iterator[None]:
    """Held while one builder makes entry ``key``: a file lock between processes (POSIX), a
    lock between threads of this process. Without ``fcntl`` builders may race; the atomic
    rename still keeps every entry whole."""
    with _thread_locks_guard:
        thread_lock = _thread_locks.setdefault(key, threading.Lock())
    with thread_lock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            yield
            return
        locks = root / ".locks"
        try:
            locks.mkdir(exist_ok=True)
            fd = os.open(locks / f"{key}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)  # explicit: a loader worker may hold a copy
        finally:
            os.close(fd)


def _discard(path: Path) -> None:
    """Remove an entry (renamed aside first, so no reader opens a half-deleted one)."""
    if not path.exists():
        return
    aside = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}{ASIDE}")
    try:
        os.replace(path, aside)
    except OSError:
        return
    shutil.rmtree(aside, ignore_errors=True)


def _collate(items):
    return items


def _build(root: Path, key: str, samples: Dataset, fields: Sequence[Field], expected: dict,
           describe: dict, budget: int, *, workers: int | None, batch_size: int) -> dict | None:
    from .. import __version__
    from .engine import make_loader

    n = len(samples)
    try:
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{key}.", suffix=BUILDING))
    except OSError as exc:
        raise _Skip(f"pixel cache folder {root} is not writable ({exc}); decoding every "
                    "epoch instead") from exc
    try:
        try:
            files = {f.name: open(tmp / f"{f.name}.bin", "wb") for f in fields}
        except OSError as exc:
            raise _Skip(f"pixel cache {tmp} could not be written ({exc}); decoding every "
                        "epoch instead") from exc
        shapes: dict[str, list[tuple[int, ...]]] = {f.name: [] for f in fields}
        written = dict.fromkeys(files, 0)
        loader = make_loader(samples, batch_size=batch_size, device=torch.device("cpu"),
                             collate_fn=_collate, workers=workers)
        count = 0
        try:
            for batch in loader:  # a data error here propagates: the run fails as uncached
                for item in batch:
                    if count == 0:
                        _check_room(root, item, fields, n, budget)
                    for f, value in zip(fields, item, strict=True):
                        array = value.numpy() if isinstance(value, torch.Tensor) else value
                        if array.dtype != np.dtype(f.dtype):
                            raise TypeError(f"pixel cache field {f.name!r}: expected "
                                            f"{f.dtype}, got {array.dtype}")
                        shapes[f.name].append(array.shape)  # (not ascontiguousarray: 0-d)
                        flat = np.ascontiguousarray(array.reshape(-1))
                        try:
                            files[f.name].write(memoryview(flat).cast("B"))
                        except OSError as exc:
                            raise _Skip(f"pixel cache {tmp} could not be written ({exc}); "
                                        "decoding every epoch instead") from exc
                        written[f.name] += array.nbytes
                    count += 1
        finally:
            del loader
            for fh in files.values():
                with contextlib.suppress(OSError):
                    fh.flush()
                    os.fsync(fh.fileno())
                fh.close()
        if count != n:
            raise RuntimeError(f"pixel cache: the loader gave {count} samples of {n}")
        meta = {"version": PIXEL_CACHE_VERSION, "key": key, "n": n, "ids": expected["ids"],
                "marsbench": __version__, "built_from": describe, "fields": {}}
        for f in fields:
            distinct = set(shapes[f.name])
            spec = {"dtype": f.dtype, "nbytes": written[f.name]}
            if len(distinct) == 1:
                spec["shape"] = list(distinct.pop())
            else:
                spec["shape"] = None
                np.save(tmp / f"{f.name}.shapes.npy", np.asarray(shapes[f.name], np.int64))
            meta["fields"][f.name] = spec
        try:
            (tmp / META).write_text(json.dumps(meta, indent=1, sort_keys=True))
            _fsync_dir(tmp)
        except OSError as exc:
            raise _Skip(f"pixel cache {tmp} could not be written ({exc}); decoding every "
                        "epoch instead") from exc
        try:
            os.rename(tmp, root / key)  # a folder: fails if another builder put one there
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            cache = _open_valid(root / key, expected)  # (only without a file lock)
            if cache is None:
                raise _Skip(f"pixel cache {root / key} could not be written ({exc}); "
                            "decoding every epoch instead") from exc
            return cache.meta
        _fsync_dir(root)
        return meta
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _check_room(root: Path, item, fields: Sequence[Field], n: int, budget: int) -> None:
    """Refuse (with a `_Skip`) an entry that would not fit the budget or the free disk space,
    estimated from the first sample."""
    per_sample = sum(int(np.prod(tuple(torch.as_tensor(v).shape), dtype=np.int64))
                     * np.dtype(f.dtype).itemsize for f, v in zip(fields, item))
    need = per_sample * n
    gib = need / 2**30
    if need > budget:
        raise _Skip(f"pixel cache: this split needs about {gib:.1f} GiB, more than the budget "
                    f"{budget / 2**30:.1f} GiB ({ENV}); decoding every epoch instead")
    free = shutil.disk_usage(root).free
    if need + FREE_SPACE_MARGIN > free:
        raise _Skip(f"pixel cache: this split needs about {gib:.1f} GiB and {root} has "
                    f"{free / 2**30:.1f} GiB free; decoding every epoch instead")


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _prune(root: Path, budget: int, *, keep: str) -> None:
    """Delete least recently used entries (``meta.json`` time) until the cache fits ``budget``;
    ``keep`` is never deleted. Readers that have an entry mapped keep reading it (POSIX)."""
    entries = []
    for path in root.iterdir():
        if path.name.startswith(".") and path.name.endswith((BUILDING, ASIDE)):
            with contextlib.suppress(OSError):  # left by a builder that was killed
                if time.time() - path.stat().st_mtime > STALE_TEMP_S:
                    shutil.rmtree(path, ignore_errors=True)
            continue
        if path.name.startswith(".") or not path.is_dir():
            continue
        try:
            used = (path / META).stat().st_mtime
            size = sum(p.stat().st_size for p in path.iterdir())
        except OSError:
            continue
        entries.append((used, path, size))
    total = sum(size for _, _, size in entries)
    for _, path, size in sorted(entries, key=lambda e: e[0]):
        if total <= budget:
            break
        if path.name != keep:
            _discard(path)
            total -= size
