"""Checks every reader applies to labels, masks and boxes, whatever the format they came from.

A label is an integer class id in ``0..K-1``: ``3`` and ``"3"`` (and ``3.0`` / ``"3.0"``, as
spreadsheets write them) are accepted; ``1.7``, ``inf``, ``nan``, ``True``, empty or null cells
and anything out of range are a `DataError` naming the file, the row and the value - never
rounded. A multi-label target is a list of such ids (folder layout) or a multi-hot vector of
0 / 1 of length K (HF layout). A box must be four finite numbers with positive width and height
inside the image (within a pixel of rounding), with a class id in ``1..K``.
"""

from __future__ import annotations

import ast
import math
import numbers
from typing import Any

import numpy as np

from .errors import DataError

_MISSING = ("", "nan", "none", "null", "na", "n/a")


def first_repeat(values) -> tuple[int, int, int] | None:
    """``(i, j, extra)`` for the first value seen again: its first row ``i``, the repeat's row
    ``j``, and how many rows repeat an earlier one in all; None if no value repeats. Empty
    cells (None, "") are not ids and never repeat."""
    first: dict = {}
    found = None
    extra = 0
    for j, value in enumerate(values):
        if value is None or value == "":
            continue
        if value in first:
            extra += 1
            found = found or (first[value], j)
        else:
            first[value] = j
    return None if found is None else (*found, extra)


def parse_class_id(value: Any) -> int:
    """An integer class id from a cell; `ValueError` with the reason when it is not one."""
    if value is None:
        raise ValueError("null")
    if isinstance(value, (bool, np.bool_)):
        raise ValueError("a boolean, not a class id")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in _MISSING:
            raise ValueError("empty" if not text else "missing")
        try:
            return int(text)
        except ValueError:
            pass
        try:
            value = float(text)
        except ValueError:
            raise ValueError("not a number") from None
    if isinstance(value, numbers.Real):
        number = float(value)
        if not math.isfinite(number):
            raise ValueError("not finite")
        if number != int(number):
            raise ValueError("not an integer")
        return int(number)
    raise ValueError(f"a {type(value).__name__}, not a class id")


def class_label(value: Any, num_classes: int, **where) -> int:
    """``value`` as a class id in ``0..num_classes-1``, or a `DataError` naming ``where``."""
    try:
        label = parse_class_id(value)
    except ValueError as exc:
        raise DataError(f"label is not an integer class id ({exc})", value=_shown(value),
                        fix="write the class id (0..K-1) as a whole number", **where) from None
    if not 0 <= label < num_classes:
        raise DataError(f"label out of range 0..{num_classes - 1}", value=_shown(value),
                        fix="fix the label or mapping.json", **where)
    return label


def multilabel_from_ids(text: Any, num_classes: int, **where) -> np.ndarray:
    """``"[0, 4, 17]"`` (folder layout) -> multi-hot ``int8`` vector of length ``num_classes``.

    ``[]`` is an image with no labels; an empty cell is refused (write ``[]``)."""
    fix = "write the label ids as a list like [0, 4, 17] ([] for none)"
    if text is None or (isinstance(text, str) and not text.strip()):
        raise DataError("multi-label cell is empty", value=_shown(text), fix=fix, **where)
    if isinstance(text, str):
        if len(text) > 100_000:
            raise DataError("multi-label cell is too long", value=_shown(text), fix=fix,
                            **where)
        try:
            ids = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
            raise DataError("multi-label cell is not a list of label ids", value=_shown(text),
                            fix=fix, **where) from None
    else:
        ids = text
    if isinstance(ids, (numbers.Integral, str)) and not isinstance(ids, bool):
        ids = [ids]
    if not isinstance(ids, (list, tuple)):
        raise DataError("multi-label cell is not a list of label ids", value=_shown(text),
                        fix=fix, **where)
    target = np.zeros(num_classes, dtype=np.int8)
    for item in ids:
        if isinstance(item, str) or isinstance(item, (list, tuple, dict, set)):
            raise DataError("multi-label entry is not an integer label id", value=_shown(text),
                            fix=fix, **where)
        try:
            label = parse_class_id(item)
        except ValueError as exc:
            raise DataError(f"multi-label entry {item!r} is not an integer label id ({exc})",
                            value=_shown(text), fix=fix, **where) from None
        if not 0 <= label < num_classes:
            raise DataError(f"multi-label entry {label} out of range 0..{num_classes - 1}",
                            value=_shown(text), fix=fix, **where)
        target[label] = 1
    return target


def multihot(value: Any, num_classes: int, **where) -> np.ndarray:
    """A multi-hot vector cell (HF layout): exactly ``num_classes`` entries, each 0 or 1."""
    fix = f"'labels' must be a list of {num_classes} zeros and ones"
    if value is None:
        raise DataError("multi-label cell is null", fix=fix, **where)
    items = list(value) if isinstance(value, (list, tuple, np.ndarray)) else None
    if items is None:
        raise DataError("multi-label cell is not a list", value=_shown(value), fix=fix, **where)
    if len(items) != num_classes:
        raise DataError(f"multi-hot vector has {len(items)} entries, expected {num_classes}",
                        value=_shown(value), fix=fix, **where)
    out = np.zeros(num_classes, dtype=np.int8)
    for j, item in enumerate(items):
        try:
            bit = parse_class_id(item)
        except ValueError as exc:
            raise DataError(f"multi-hot entry {j} is not 0 or 1 ({exc})", value=_shown(value),
                            fix=fix, **where) from None
        if bit not in (0, 1):
            raise DataError(f"multi-hot entry {j} is {bit}, not 0 or 1", value=_shown(value),
                            fix=fix, **where)
        out[j] = bit
    return out


def _shown(value: Any) -> str:
    """The offending value as written in errors: ``repr`` (so ``'1.7'`` and ``1.7`` differ and
    whitespace shows), cut to 80 characters."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# ---- masks and boxes ---------------------------------------------------------------------------

def validate_mask(image: np.ndarray, mask: np.ndarray, num_classes: int,
                  ignore_index: int | None, where: str) -> None:
    if image.shape[:2] != mask.shape[:2]:
        raise DataError(f"image is {image.shape[1]}x{image.shape[0]} but mask is "
                        f"{mask.shape[1]}x{mask.shape[0]}", path=where)
    values = np.unique(mask)
    bad = [int(v) for v in values if (v < 0 or v >= num_classes) and v != ignore_index]
    if bad:
        hint = " or set an ignore value" if ignore_index is None else ""
        raise DataError(f"mask value {bad[0]} >= {num_classes} classes"
                        if bad[0] >= 0 else f"mask value {bad[0]} is negative", path=where,
                        fix=f"fix the mask{hint}")


def box_numbers(values: Any, count: int, what: str, **where) -> list[float]:
    """``count`` finite numbers from an annotation cell, or a `DataError` naming it."""
    if not isinstance(values, (list, tuple, np.ndarray)) or len(values) != count:
        raise DataError(f"{what} must be {count} numbers", value=_shown(values), **where)
    out = []
    for v in values:
        if isinstance(v, (bool, np.bool_)) or v is None:
            raise DataError(f"{what} must be {count} numbers", value=_shown(values), **where)
        try:
            number = float(v)
        except (TypeError, ValueError):
            raise DataError(f"{what} must be {count} numbers", value=_shown(values),
                            **where) from None
        if not math.isfinite(number):
            raise DataError(f"{what} has a non-finite value", value=_shown(values), **where)
        out.append(number)
    return out


def validate_boxes(boxes: np.ndarray, labels: np.ndarray, width: int, height: int,
                   num_classes: int, where: str, tolerance: float = 1.0) -> None:
    """Finite, positive-area boxes inside the image, class ids in ``1..num_classes``."""
    for (x0, y0, x1, y1), label in zip(np.asarray(boxes).tolist(), np.asarray(labels).tolist()):
        box = f"[{x0:g}, {y0:g}, {x1:g}, {y1:g}]"
        if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
            raise DataError(f"box {box} has a non-finite coordinate", path=where,
                            fix="drop or fix the box")
        if x1 <= x0 or y1 <= y0:
            kind = "zero" if (x1 == x0 or y1 == y0) else "negative"
            raise DataError(f"box {box} has {kind} area", path=where, fix="drop or fix the box")
        if x0 < -tolerance or y0 < -tolerance or x1 > width + tolerance or y1 > height + tolerance:
            raise DataError(f"box {box} lies outside the {width}x{height} image", path=where,
                            fix="clip or fix the box")
        if not 1 <= label <= num_classes:
            raise DataError(f"class id {label} out of range 1..{num_classes}", path=where)
