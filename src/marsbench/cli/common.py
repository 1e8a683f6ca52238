"""Checks the commands share, so that a bad option is refused before anything runs.

Each raises `OptionError` (printed by the handler in `marsbench.cli.main` as one line,
``error: <what> (<where>): <value>; <fix>``, exit code 2).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import typer

from ..errors import OptionError, did_you_mean


def echo_error(text: str) -> None:
    """``error: <text>`` on stderr, as one line (no rich markup: brackets in paths stay)."""
    typer.echo(typer.style("error:", fg="red") + " " + " ".join(str(text).split("\n")),
               err=True)


def choice(value: str, choices: Iterable[str], option: str) -> str:
    """``value`` if it is one of ``choices``; else an error naming the option and close names."""
    choices = list(choices)
    if value not in choices:
        raise OptionError(f"unknown {option} value", value=value,
                          fix=did_you_mean(value, choices).replace("choose from", "use one of"))
    return value


def confidence(value: float, option: str = "--confidence") -> float:
    """An interval level from 0.5 to 0.999 (nan and inf refused by name, as out of range)."""
    if not 0.5 <= value <= 0.999:  # false for nan too
        raise OptionError(f"{option} must be a number from 0.5 to 0.999", where=option,
                          value=str(value), fix="e.g. 0.95")
    return value


def data_root(root: Path | None, option: str = "--root") -> Path | None:
    """An explicit data root must be an existing folder (None: the default root)."""
    if root is None:
        return None
    path = Path(root).expanduser()
    if not path.exists():
        raise OptionError(f"the data root given with {option} does not exist", where=path,
                          fix="check the path, or leave the option out to use $MARSBENCH_DATA "
                              "or the user cache folder")
    if not path.is_dir():
        raise OptionError(f"the data root given with {option} is not a folder", where=path,
                          fix="give the folder that holds the dataset folders")
    return path


def dataset_name(name: str, option: str = "dataset") -> str:
    """A catalog name, an existing dataset folder, or a hub repo id ``owner/name``.

    Something that can only be a path (``./x``, ``/x/y``, ``~/x``, or ``a/b/c``) must be an
    existing folder; a catalog name with a typo gets a "did you mean".
    """
    from ..catalog import get_card

    path = Path(name).expanduser()
    if path.is_dir():
        return name
    if path.exists():
        raise OptionError(f"the {option} is a file, not a dataset folder", where=path,
                          fix="give the dataset's folder (holding annotation.csv or data/) or a "
                              "catalog name (`marsbench datasets list`)")
    looks_like_path = (name.startswith((".", "/", "~")) or name.count("/") > 1
                       or "\\" in name)
    if looks_like_path:
        raise OptionError(f"no dataset folder at the {option} path", where=path,
                          fix="check the path, or give a catalog name "
                              "(`marsbench datasets list`)")
    get_card(name.split("/")[-1])  # UnknownDatasetError, with "did you mean", for a typo
    return name


def output_folder(path: Path, option: str, *, create: bool = True) -> Path:
    """A folder to write into: made if missing (or, with ``create=False``, only checked that it
    can be made); refused if it or a part of its path is a file, or it is not writable."""
    import os

    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise OptionError(f"the {option} folder is a file", where=path,
                          fix=f"give a folder path to {option}")
    existing = next(p for p in (path, *path.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise OptionError(f"the {option} folder cannot be made: a part of its path is a file",
                          where=existing, fix=f"give another folder to {option}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OptionError(f"the {option} folder is not writable", where=existing,
                          fix=f"fix its permissions, or give another folder to {option}")
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OptionError(f"the {option} folder cannot be made", where=path,
                              value=exc.strerror or str(exc),
                              fix=f"check its permissions, or give another folder to {option}"
                              ) from None
    return path


def output_file(path: Path, option: str, *, create: bool = True) -> Path:
    """A file to write: its folder is made (see `output_folder`); a folder there is refused."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise OptionError(f"the {option} path is a folder, not a file", where=path,
                          fix=f"give a file path to {option}")
    output_folder(path.parent, f"{option} file's", create=create)
    return path


def use_logger(name: str | None, log_dir: Path | None) -> None:
    """``--logger`` / ``--log-dir``: checked (known, installed), then set for this process and
    the workers it starts ($MARSBENCH_LOGGER, $MARSBENCH_LOG_DIR)."""
    import os

    from ..training.loggers import LOG_DIR_ENV, LOGGER_ENV, check_logger

    if name is not None:
        os.environ[LOGGER_ENV] = check_logger(name.strip().lower())
    elif os.environ.get(LOGGER_ENV):
        check_logger(os.environ[LOGGER_ENV].strip().lower(), where=LOGGER_ENV)
    if log_dir is not None:
        os.environ[LOG_DIR_ENV] = str(Path(log_dir).expanduser().resolve())
