"""Class names come from the data (mapping.json, HF label features); the card only checks them."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..catalog import DatasetCard
from .errors import DataError

IGNORE_WORDS = ("ignore", "unlabel", "void")


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name.strip().lower())


def parse_mapping(data: dict, *, path: str = "mapping.json") -> tuple[dict[int, list[str]], int | None]:
    """``{"0": "name"}`` or ``{"0": ["code", "name"]}`` -> ({id: aliases}, ignore value or None).

    An entry whose id is >= 255 or whose name says ignore/unlabelled is the ignore value.
    """
    mapping: dict[int, list[str]] = {}
    ignore = None
    for key, value in data.items():
        try:
            idx = int(key)
        except ValueError:
            raise DataError(f"key {key!r} is not an integer class id", path=path) from None
        aliases = [str(v) for v in value] if isinstance(value, list) else [str(value)]
        if idx >= 255 or any(w in _norm(aliases[0]) for w in IGNORE_WORDS):
            ignore = idx
            continue
        mapping[idx] = aliases
    return mapping, ignore


def read_mapping_file(path: Path) -> tuple[dict[int, list[str]], int | None] | None:
    if not path.is_file():
        return None
    try:
        return parse_mapping(json.loads(path.read_text()), path=str(path))
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON ({exc})", path=path) from None


def names_from_mapping(mapping: dict[int, list[str]]) -> list[str]:
    """Names in index order; an id with no entry (a class absent from a subset) gets class_<i>."""
    if not mapping:
        return []
    return [mapping[i][0] if i in mapping else f"class_{i}" for i in range(max(mapping) + 1)]


def reconcile(card: DatasetCard, data_names: list[str], aliases: dict[int, list[str]] | None,
              notes: list[str]) -> list[str]:
    """Check the data's class names against what the card knows; refuse a silent reordering.

    A permutation of the published names (e.g. codes sorted alphabetically by an upload tool)
    would relabel every image, so it is an error. Other differences are trusted to the data and
    noted (the card may only know codes, or the data a different release).
    """
    if not data_names:
        return list(card.class_names or [])
    aliases = aliases or {i: [n] for i, n in enumerate(data_names)}

    def matches(i: int, expected: str) -> bool:
        return _norm(expected) in {_norm(a) for a in aliases.get(i, [data_names[i]])}

    expected = dict(enumerate(card.class_names)) if card.class_names else card.known_class_names
    mismatched = [i for i, name in expected.items() if i < len(data_names) and not matches(i, name)]
    if mismatched:
        data_set = {_norm(a) for i in aliases for a in aliases[i]}
        if all(_norm(expected[i]) in data_set for i in mismatched):
            detail = ", ".join(f"id {i}: data {data_names[i]!r} vs published {expected[i]!r}"
                               for i in mismatched[:5])
            raise DataError(
                f"class order differs from the published one ({detail})", dataset=card.name,
                fix="the labels would be silently reordered; restore the published mapping.json "
                    "or the HF ClassLabel order")
        notes.append(f"class names differ from the card at ids {mismatched}; using the data's")
    if card.num_classes and len(data_names) != card.num_classes and not card.synthetic:
        notes.append(f"the data has {len(data_names)} classes, the card says {card.num_classes}")
    return data_names
