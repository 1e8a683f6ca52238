"""The user-facing error type: every bad input becomes one line a user can act on.

Text shape, whatever raised it::

    <what> (<where>[ row N]): <value>; <fix>

``where`` names the dataset, split and file (or the option, the store, the experiment file);
``value`` is the offending value as found; ``fix`` says what to do. The CLI prints
``error: <text>`` on stderr and exits non-zero, with no traceback unless ``--debug`` or
``MARSBENCH_DEBUG=1`` (see `marsbench.cli.main`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def format_error(what: str, *, where: str | Path | None = None, row: int | None = None,
                 value: Any = None, fix: str | None = None) -> str:
    """``<what> (<where> row N): <value>; <fix>``; the parts that are None are left out."""
    text = str(what)
    place = " ".join(p for p in (str(where) if where else "",
                                 f"row {row}" if row is not None else "") if p)
    if place:
        text += f" ({place})"
    if value is not None:
        text += f": {value!r}" if not isinstance(value, str) else f": {value}"
    if fix:
        text += f"; {fix}"
    return " ".join(text.split("\n"))  # one line, always


class MarsbenchError(Exception):
    """Base of every error marsbench raises on purpose for bad input or environment.

    Subclasses also inherit the builtin type callers used to catch (``ValueError``,
    ``KeyError``, ``RuntimeError``), so existing ``except`` clauses keep working.
    """

    def __init__(self, what: str, *, where: str | Path | None = None, row: int | None = None,
                 value: Any = None, fix: str | None = None) -> None:
        self.what, self.where, self.row, self.value, self.fix = what, where, row, value, fix
        super().__init__(format_error(what, where=where, row=row, value=value, fix=fix))

    def __str__(self) -> str:  # KeyError subclasses would otherwise repr() the message
        return self.args[0] if self.args else ""


class OptionError(MarsbenchError, ValueError):
    """A run option, CLI flag or experiment-file value that is unknown or invalid; ``option``
    names the option at fault, where there is one."""

    def __init__(self, what: str, *, option: str | None = None, **parts: Any) -> None:
        self.option = option
        super().__init__(what, **parts)


def did_you_mean(name: str, choices, *, n: int = 3) -> str:
    """``"did you mean 'x'?"`` for the closest of ``choices``, else the list of choices."""
    import difflib

    choices = sorted(str(c) for c in choices)
    close = difflib.get_close_matches(str(name), choices, n=n, cutoff=0.6)
    if close:
        return "did you mean " + " or ".join(repr(c) for c in close) + "?"
    shown = ", ".join(choices[:30]) + (", ..." if len(choices) > 30 else "")
    return f"choose from {shown}"


def in_range(value: float | None, option: str, low: float, high: float, *,
             low_open: bool = False, example: str) -> float | None:
    """``value`` (None passes) if finite and within [low, high] (``low_open``: above low);
    else one line naming the option, the range and an example. Checked by hand because
    typer's ``min``/``max`` let nan through and overflow on huge integers later, deep in a
    process pool or ``torch.set_num_threads``."""
    if value is None:
        return None
    above = value > low if low_open else value >= low
    if not (above and value <= high):  # false for nan too
        lowest = "greater than" if low_open else "at least"
        raise OptionError(f"{option} must be {lowest} {_plain(low)} and at most {_plain(high)}",
                          where=option, value=str(value), fix=f"e.g. {option} {example}")
    return value


def _plain(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def env_int(name: str, low: int, high: int, *, example: str) -> int | None:
    """The integer in environment variable ``name`` (None if unset or empty); anything else,
    or a number outside [low, high], is one line naming the variable (never silently
    ignored or clamped)."""
    import os

    from .runs.fingerprint import exact_int

    text = os.environ.get(name, "").strip()
    if not text:
        return None
    value = exact_int(text)
    if value is None or not low <= value <= high:
        raise OptionError(f"{name} must be an integer from {low} to {high}",
                          where="environment", value=text, fix=f"e.g. {name}={example}")
    return value
