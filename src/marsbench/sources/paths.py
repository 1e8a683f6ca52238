"""Containment: no reader ever opens a file outside the dataset folder.

Every path a reader builds from data it did not choose (an annotation CSV's ``file_id`` and
``feature_name``, a listed image that may be a symbolic link, a parquet image cell's ``path``)
goes through `contained` (a path relative to the dataset root) or `inside` (a path already
joined), which resolve symbolic links and ``..`` and refuse anything that lands outside the
dataset root with a `DataError` naming the path. Text files are read through `read_text`, which
also refuses empty-where-content-is-required, binary (NUL bytes) and non-UTF-8 files.

A symbolic link that stays inside the dataset is fine; one that leaves it is refused, also when
it points at a copy of the data elsewhere: point ``--root`` at the real folder instead.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath

from .errors import DataError

_OUTSIDE_FIX = ("paths must stay inside the dataset folder; copy the file into it (a symbolic link "
                "must not point outside it) or point --root at the real folder")


def display(root: str | Path, path: str | Path) -> str:
    """How errors name a file: ``<dataset folder>/<path inside it>``, else the path as given."""
    root, path = Path(root), Path(path)
    try:
        return f"{root.name}/{path.relative_to(root).as_posix()}"
    except ValueError:
        return str(path)


def relative_problem(relative: str | Path) -> str | None:
    """Why ``relative`` cannot name a file inside a dataset (before touching the disk), or None."""
    text = str(relative)
    if not text.strip():
        return "empty path"
    if "\0" in text:
        return "path contains a NUL byte"
    posix = PurePosixPath(text.replace("\\", "/"))
    win = PureWindowsPath(text)
    if posix.is_absolute() or win.drive or win.root:
        return "absolute path"
    if ".." in posix.parts:
        return "path contains '..'"
    return None


class Guard:
    """Checks paths against one dataset root, resolving each folder once (cheap per file).

    ``guard(path)`` returns ``path`` if it resolves inside the root, else raises a `DataError`.
    A folder's resolution is cached; the file itself is resolved only when it is a symbolic
    link, so checking every file of a large split costs about one ``lstat`` per file.
    """

    def __init__(self, root: str | Path, *, dataset: str | None = None,
                 split: str | None = None) -> None:
        self.root = Path(root)
        self.real = self.root.resolve()
        self.dataset, self.split = dataset, split
        self._dirs: dict[Path, Path] = {}

    def _real_dir(self, folder: Path) -> Path:
        real = self._dirs.get(folder)
        if real is None:
            real = self._dirs[folder] = folder.resolve()
        return real

    def __call__(self, path: str | Path, *, row: int | None = None, what: str = "file") -> Path:
        path = Path(path)
        try:
            if path.is_symlink():
                resolved = path.resolve()
            else:
                resolved = self._real_dir(path.parent) / path.name
        except (OSError, RuntimeError) as exc:  # a symbolic-link loop
            raise DataError(f"{what} path cannot be resolved ({exc})", dataset=self.dataset,
                            split=self.split, path=display(self.root, path), row=row) from None
        if resolved != self.real and not resolved.is_relative_to(self.real):
            raise DataError(f"{what} resolves outside the dataset folder", dataset=self.dataset,
                            split=self.split, path=display(self.root, path), row=row,
                            value=str(resolved), fix=_OUTSIDE_FIX)
        return path


def inside(root: str | Path, path: str | Path, *, dataset: str | None = None,
           split: str | None = None, row: int | None = None, what: str = "file") -> Path:
    """``path`` (already under ``root``) if it resolves inside ``root``; else a `DataError`.

    Resolving follows every symbolic link, so a link leaving the dataset is caught; a file that
    does not exist resolves as far as it can and is reported missing by whoever opens it.
    """
    return Guard(root, dataset=dataset, split=split)(path, row=row, what=what)


def refuse_unsafe(relative: str | Path, *, dataset: str | None = None, split: str | None = None,
                  row: int | None = None, where: str | Path | None = None,
                  what: str = "file") -> None:
    """A `DataError` unless ``relative`` is a plain relative path (no '..', not absolute)."""
    problem = relative_problem(relative)
    if problem:
        raise DataError(f"{what} path refused: {problem}", dataset=dataset, split=split,
                        path=where, row=row, value=str(relative), fix=_OUTSIDE_FIX)


def contained(root: str | Path | Guard, relative: str | Path, *, dataset: str | None = None,
              split: str | None = None, row: int | None = None, where: str | Path | None = None,
              what: str = "file") -> Path:
    """``root / relative``, refused unless it is a plain relative path resolving inside ``root``.

    ``root`` may be a `Guard` (to check many paths cheaply). ``where`` names the file the
    path came from (an annotation CSV, a parquet shard), ``row`` its row; the error then reads
    ``<what> ... (<dataset> <split> <where> row N): <path>; <fix>``.
    """
    refuse_unsafe(relative, dataset=dataset, split=split, row=row, where=where, what=what)
    guard = root if isinstance(root, Guard) else Guard(root, dataset=dataset, split=split)
    path = guard.root / str(relative).replace("\\", "/")
    try:
        return guard(path, row=row, what=what)
    except DataError as exc:
        if where is None:
            raise
        raise DataError(exc.what, dataset=dataset, split=split, path=where, row=row,
                        value=f"{relative} -> {exc.value}", fix=exc.fix) from None


def read_bytes(root: str | Path, path: str | Path, *, dataset: str | None = None,
               split: str | None = None, what: str = "file") -> bytes:
    """The bytes of ``path`` (checked to lie inside ``root``), or a `DataError` naming it."""
    path = inside(root, path, dataset=dataset, split=split, what=what)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{what} missing", dataset=dataset, split=split,
                        path=display(root, path),
                        fix="restore the file (re-download the dataset)") from None
    except IsADirectoryError:
        raise DataError(f"{what} is a folder, not a file", dataset=dataset, split=split,
                        path=display(root, path),
                        fix="replace it with the file (re-download the dataset)") from None
    except OSError as exc:
        raise DataError(f"{what} unreadable ({exc.strerror or exc})", dataset=dataset,
                        split=split, path=display(root, path)) from None


def decode_text(data: bytes, *, path: str | Path | None = None, dataset: str | None = None,
                split: str | None = None, what: str = "file", allow_empty: bool = True) -> str:
    """UTF-8 text (a BOM is dropped); binary or non-UTF-8 content is a `DataError`."""
    if not data and not allow_empty:
        raise DataError(f"{what} is empty (0 bytes)", dataset=dataset, split=split, path=path,
                        fix="re-download the dataset or restore the file")
    if b"\0" in data:
        at = data.index(b"\0")
        raise DataError(f"{what} is binary, not text (NUL byte at offset {at})",
                        dataset=dataset, split=split, path=path,
                        fix="re-download the dataset or restore the file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{what} is not UTF-8 text (bad byte at offset {exc.start})",
                        dataset=dataset, split=split, path=path,
                        value=data[exc.start:exc.start + 8],
                        fix="save the file as UTF-8") from None


def read_text(root: str | Path, path: str | Path, *, dataset: str | None = None,
              split: str | None = None, what: str = "file", allow_empty: bool = True) -> str:
    """A UTF-8 text file inside ``root``: containment, missing, empty, binary all named."""
    data = read_bytes(root, path, dataset=dataset, split=split, what=what)
    return decode_text(data, path=display(root, path), dataset=dataset, split=split, what=what,
                       allow_empty=allow_empty)
