"""Content identity of data files: a blake2b digest of each file's bytes, memoised per file.

This is the one place marsbench hashes data files. A split's data fingerprint (and so the frozen
feature cache key and the sweep's staleness check) is built from these digests, so it changes
whenever any byte of an image, mask or annotation file changes - names and sizes alone are not
an identity.

Reading every byte of a 50,000-image dataset on every check would be slow, so each digest is
memoised in a small SQLite file under the marsbench cache (``$MARSBENCH_CACHE`` else the user
cache dir, beside ``features/``), keyed by the file's resolved path and its stat signature.
A re-check costs one ``stat`` per file plus one batched lookup.

**The memo contract.** A memoised digest is reused only while the file's size, mtime (ns),
ctime (ns), inode and device are all unchanged. ``make`` and ``rsync`` trust size + mtime alone;
we also take ctime and inode (as git's index does) because they cost nothing extra (same
``stat``) and close the holes mtime leaves: a tool that restores the old mtime after editing in
place (``os.utime``, ``touch -r``, ``cp -p``, an archive extraction) still moves ctime, which no
user call can set, and a file replaced by another one (rename over it) gets a new inode. The
price of the stricter key is only an occasional re-hash (after ``chmod``/``chown``, or a copy).

**Racy files.** Timestamps have a granularity (a clock tick on Linux, up to 2 s on FAT), so a
file rewritten within the same tick after it was hashed could keep its whole stat signature.
As git does with "racily clean" entries, a digest is not memoised while the file's mtime or
ctime is within `RACY_WINDOW_NS` of the moment it was hashed: such a file is simply hashed
again next time, until it has been quiet for that long.

**Failure is never fatal.** Several processes may share the memo (WAL journal, a busy timeout,
short write transactions). If the memo cannot be opened or written (read-only cache, full disk,
a corrupt file - which is moved aside and replaced once), the digests are computed without it,
with one warning per process.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat as stat_module
import time
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePath

import platformdirs

from .errors import DataError

__all__ = ["DIGEST", "RACY_WINDOW_NS", "cache_root", "file_digest", "file_digests",
           "memo_path", "named_digests"]

CACHE_ENV = "MARSBENCH_CACHE"
MEMO_FILE = "content-hashes.sqlite3"
DIGEST = "blake2b-128"  # algorithm and digest size; part of the memo's table name
RACY_WINDOW_NS = 3 * 10**9  # do not memoise files changed less than this before hashing
MEMO_MAX_ROWS = 3_000_000  # past this, the oldest entries are dropped ...
MEMO_KEEP_ROWS = 2_000_000  # ... down to this many (a few hundred MB at most)
_TABLE = "blake2b_128_v1"
_LOOKUP_CHUNK = 900  # bound parameters per query (old SQLite builds allow 999)
_WRITE_CHUNK = 5000  # rows per write transaction: other processes wait at most that long
_BUSY_TIMEOUT_MS = 5000
_warned: set[str] = set()


def cache_root() -> Path:
    """The marsbench cache folder: ``$MARSBENCH_CACHE`` else the user cache dir (as features)."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("marsbench"))


def memo_path() -> Path:
    return cache_root() / MEMO_FILE


def _new_hash():
    return hashlib.blake2b(digest_size=16)


def _hash_open_file(path: str) -> tuple[str, os.stat_result, int]:
    """Digest of the file's bytes, its stat after reading (to spot a concurrent write) and the
    time the read began (to spot a racy file)."""
    started = time.time_ns()
    try:
        with open(path, "rb") as fh:
            digest = hashlib.file_digest(fh, _new_hash).hexdigest()
            after = os.fstat(fh.fileno())
    except OSError as exc:
        raise _unreadable(path, exc) from None
    return digest, after, started


def _unreadable(path: str, exc: OSError) -> DataError:
    return DataError(f"cannot read data file ({exc.strerror or exc})", path=path,
                     fix="check the file's permissions and the disk")


def _signature(st: os.stat_result) -> str:
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}:{st.st_dev}"


def file_digest(path: str | os.PathLike, *, memo: bool | str | os.PathLike = True) -> str:
    """The blake2b-128 hex digest of one file's bytes (see `file_digests`)."""
    return file_digests([path], memo=memo)[0]  # type: ignore[return-value]


def file_digests(paths: Iterable[str | os.PathLike], *, missing_ok: bool = False,
                 memo: bool | str | os.PathLike = True,
                 stats: dict | None = None) -> list[str | None]:
    """blake2b-128 hex digests of the files' bytes, in order, memoised (one batched lookup).

    ``missing_ok``: a missing file gives None instead of a `DataError`. ``memo``: True for the
    memo under the cache root, a path for another memo file, False to hash without one.
    ``stats``, if given, is filled with counts: ``files``, ``memo_hits``, ``hashed``, ``memoised``.
    """
    names = [os.fspath(p) for p in paths]
    keys: list[str | None] = []
    sigs: list[str | None] = []
    real_dirs: dict[str, str] = {}
    for name in names:
        try:
            st = os.stat(name)
        except (FileNotFoundError, NotADirectoryError):
            if missing_ok:
                keys.append(None)
                sigs.append(None)
                continue
            raise DataError("data file missing", path=name,
                            fix="restore the file, or remove it from the dataset's listing") \
                from None
        except OSError as exc:
            raise _unreadable(name, exc) from None
        if not stat_module.S_ISREG(st.st_mode):
            raise DataError("not a regular file", path=name, fix="point at the data file")
        # The memo key: the folder's real path (resolved once per folder) and the file's name.
        if os.altsep is None:  # POSIX: a plain string split, several times faster
            folder, sep, base = name.rpartition(os.sep)
            folder = folder or sep  # "/x.png" lies in "/"; "x.png" in ""
        else:
            folder, base = os.path.split(name)
        real = real_dirs.get(folder)
        if real is None:
            real = real_dirs[folder] = os.path.realpath(folder or ".")
        keys.append(os.path.join(real, base))
        sigs.append(_signature(st))

    store = _Memo.get(memo)
    known = store.lookup({k for k in keys if k is not None}) if store else {}
    out: list[str | None] = [None] * len(names)
    todo: dict[str, int] = {}  # memo key -> index of the first name with it
    hits = 0
    for i, (key, sig) in enumerate(zip(keys, sigs)):
        if key is None:
            continue
        row = known.get(key)
        if row is not None and row[0] == sig:
            out[i] = row[1]
            hits += 1
        elif key not in todo:
            todo[key] = i

    # One thread: for files in the page cache a thread pool measured slower (GIL hand-offs
    # outweigh the overlap); the memo, not parallel reads, is what makes re-checks cheap.
    indices = list(todo.values())
    results = [_hash_open_file(names[i]) for i in indices]
    fresh: list[tuple[str, str, str]] = []
    computed: dict[str, str] = {}
    for i, (digest, after, started) in zip(indices, results):
        key, sig = keys[i], sigs[i]
        computed[key] = digest  # type: ignore[index]
        quiet = started - max(after.st_mtime_ns, after.st_ctime_ns) >= RACY_WINDOW_NS
        if quiet and _signature(after) == sig:  # unchanged while it was read, and not racy
            fresh.append((key, sig, digest))  # type: ignore[arg-type]
    for i, key in enumerate(keys):
        if key is not None and out[i] is None:
            out[i] = computed[key]
    if store and fresh:
        store.store(fresh)
    if stats is not None:
        stats.update(files=len(names), memo_hits=hits, hashed=len(indices),
                     memoised=len(fresh) if store else 0)
    return out


def named_digests(root: str | os.PathLike, paths: Sequence[str | os.PathLike], *,
                  missing_ok: bool = False) -> list[str]:
    """``"<path relative to root>\\0<digest>"`` per file (``missing`` for an absent file where
    ``missing_ok``): what a split's fingerprint hashes. Relative names only, so the same folder
    reached through any spelling of its path (relative, absolute, through a symlink, with a
    trailing slash) gives the same parts."""
    base = PurePath(root)
    rels = []
    for p in paths:
        pure = PurePath(p)
        try:
            rels.append(pure.relative_to(base).as_posix())
        except ValueError:  # not spelled under root (should not happen): its name alone
            rels.append(pure.name)
    digests = file_digests(paths, missing_ok=missing_ok)
    return [f"{rel}\0{d if d is not None else 'missing'}" for rel, d in zip(rels, digests)]


class _Memo:
    """The SQLite memo: path -> (stat signature, digest). One short connection per batch."""

    @classmethod
    def get(cls, memo: bool | str | os.PathLike) -> "_Memo | None":
        if memo is False:
            return None
        path = memo_path() if memo is True else Path(os.fspath(memo))
        return cls(path)

    def __init__(self, path: Path) -> None:
        self.path = path

    def _warn(self, what: str, exc: BaseException) -> None:
        tag = f"{self.path}:{what}"
        if tag not in _warned:
            _warned.add(tag)
            warnings.warn(f"content-hash memo {self.path} {what} ({type(exc).__name__}: {exc}); "
                          "hashing data files without it (correct, but re-reads every file)",
                          stacklevel=4)

    def _connect(self, *, recover: bool = True) -> sqlite3.Connection | None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_MS / 1000,
                                  isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            self._warn("cannot be opened", exc)
            return None
        try:
            con.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            con.execute(f"CREATE TABLE IF NOT EXISTS {_TABLE} (path TEXT PRIMARY KEY, "
                        "sig TEXT NOT NULL, digest TEXT NOT NULL)")
            return con
        except sqlite3.DatabaseError as exc:
            con.close()
            corrupt = not isinstance(exc, sqlite3.OperationalError) or \
                "malformed" in str(exc) or "not a database" in str(exc)
            if recover and corrupt and self._move_aside(exc):
                return self._connect(recover=False)
            self._warn("cannot be used", exc)
            return None

    def _move_aside(self, exc: BaseException) -> bool:
        """A corrupt memo is only a cache: move it aside (kept for inspection) and start anew."""
        aside = self.path.with_name(f"{self.path.name}.corrupt-{os.getpid()}")
        try:
            os.replace(self.path, aside)
            for suffix in ("-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        except OSError:
            return False
        warnings.warn(f"content-hash memo {self.path} was unreadable ({exc}); moved it to "
                      f"{aside.name} and started a new one", stacklevel=5)
        return True

    def lookup(self, keys: set[str]) -> dict[str, tuple[str, str]]:
        if not keys:
            return {}
        con = self._connect()
        if con is None:
            return {}
        found: dict[str, tuple[str, str]] = {}
        ordered = sorted(keys)
        try:
            con.execute("BEGIN")  # one read snapshot for the whole batch
            for start in range(0, len(ordered), _LOOKUP_CHUNK):
                chunk = ordered[start:start + _LOOKUP_CHUNK]
                marks = ",".join("?" * len(chunk))
                for path, sig, digest in con.execute(
                        f"SELECT path, sig, digest FROM {_TABLE} WHERE path IN ({marks})", chunk):
                    found[path] = (sig, digest)
            con.execute("COMMIT")
        except sqlite3.Error as exc:
            self._warn("cannot be read", exc)
            return {}
        finally:
            con.close()
        return found

    def store(self, rows: list[tuple[str, str, str]]) -> None:
        con = self._connect()
        if con is None:
            return
        try:
            for start in range(0, len(rows), _WRITE_CHUNK):
                con.execute("BEGIN IMMEDIATE")
                con.executemany(f"INSERT OR REPLACE INTO {_TABLE} (path, sig, digest) "
                                "VALUES (?, ?, ?)", rows[start:start + _WRITE_CHUNK])
                con.execute("COMMIT")
            top, bottom = con.execute(f"SELECT max(rowid), min(rowid) FROM {_TABLE}").fetchone()
            if top is not None and top - bottom > MEMO_MAX_ROWS:
                con.execute(f"DELETE FROM {_TABLE} WHERE rowid <= ?", (top - MEMO_KEEP_ROWS,))
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                self._warn("cannot be written", exc)  # busy: another process holds it; skip
        except sqlite3.Error as exc:
            self._warn("cannot be written", exc)
        finally:
            con.close()
