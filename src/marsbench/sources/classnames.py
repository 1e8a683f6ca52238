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


_MAPPING_FIX = 'write mapping.json as {"0": "name", "1": "name", ...} with ids 0..K-1'


def load_json(text: str, *, path: str | Path, dataset: str | None = None,
              what: str = "JSON file") -> object:
    """Parse JSON text; a syntax error or a key given twice in one object is a `DataError`."""

    def no_duplicates(pairs: list[tuple[str, object]]) -> dict:
        out: dict = {}
        for key, value in pairs:
            if key in out:
                raise DataError(f"{what}: key given twice", dataset=dataset, path=path,
                                value=key, fix="keep one entry per key")
            out[key] = value
        return out

    try:
        return json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as exc:
        raise DataError(f"{what} is not valid JSON ({exc.msg} at line {exc.lineno} column "
                        f"{exc.colno})", dataset=dataset, path=path) from None
    except RecursionError:
        raise DataError(f"{what} is nested too deeply", dataset=dataset, path=path) from None


def parse_mapping(data: object, *, path: str | Path = "mapping.json",
                  dataset: str | None = None) -> tuple[dict[int, list[str]], int | None]:
    """``{"0": "name"}`` or ``{"0": ["code", "name"]}`` -> ({id: aliases}, ignore value or None).

    An entry whose id is >= 255 or whose name says ignore/unlabelled is the ignore value. Keys
    must be non-negative integers written as text, names non-empty text (or lists of it), each id
    and each name given once, and at most one ignore entry; anything else is a `DataError`.
    """
    def bad(message: str, value: object) -> DataError:
        return DataError(f"mapping.json: {message}", dataset=dataset, path=path, value=value,
                         fix=_MAPPING_FIX)

    if not isinstance(data, dict):
        raise bad("expected a JSON object of id -> class name", type(data).__name__)
    mapping: dict[int, list[str]] = {}
    ignore: int | None = None
    seen: dict[int, str] = {}
    for key, value in data.items():
        if not re.fullmatch(r"\s*\d+\s*", str(key)):
            raise bad("key is not a non-negative integer class id", key)
        idx = int(key)
        if idx in seen:
            raise bad(f"class id {idx} given twice (keys {seen[idx]!r} and {key!r})", key)
        seen[idx] = key
        if isinstance(value, str):
            aliases = [value]
        elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            aliases = list(value)
        else:
            raise bad(f"class {idx}: name must be text or a non-empty list of text", value)
        if any(not a.strip() for a in aliases):
            raise bad(f"class {idx}: empty name", value)
        if idx >= 255 or any(w in _norm(aliases[0]) for w in IGNORE_WORDS):
            if ignore is not None:
                raise bad(f"two ignore entries ({ignore} and {idx})", value)
            ignore = idx
            continue
        mapping[idx] = aliases
    if not mapping:
        raise bad("has no classes" + (f" (only the ignore entry {ignore})" if data else ""),
                  json.dumps(data)[:80])
    names: dict[str, int] = {}
    for idx in sorted(mapping):
        norm = _norm(mapping[idx][0])
        if norm in names:
            raise bad(f"classes {names[norm]} and {idx} have the same name", mapping[idx][0])
        names[norm] = idx
    return mapping, ignore


def read_mapping_file(path: Path, *, root: Path | None = None,
                      dataset: str | None = None) -> tuple[dict[int, list[str]], int | None] | None:
    """The parsed ``mapping.json`` (None when absent); read only inside ``root``."""
    from .paths import display, read_text

    if path.is_dir() and not path.is_symlink():
        raise DataError("mapping.json is a folder, not a file", dataset=dataset,
                        path=display(root or path.parent, path), fix=_MAPPING_FIX)
    if not path.is_file() and not path.is_symlink():
        return None
    text = read_text(root or path.parent, path, dataset=dataset, what="mapping.json",
                     allow_empty=False)
    shown = display(root or path.parent, path)
    data = load_json(text, path=shown, dataset=dataset, what="mapping.json")
    return parse_mapping(data, path=shown, dataset=dataset)


def names_from_mapping(mapping: dict[int, list[str]], *, card: DatasetCard | None = None,
                       ignore: int | None = None, notes: list[str] | None = None,
                       path: str | Path = "mapping.json") -> list[str]:
    """Names in index order 0..max id.

    A missing id is never invented: the ignore entry's own slot keeps the name ``ignore``; a
    missing id the card names is filled from the card (and noted); any other gap is a
    `DataError` listing the missing ids.
    """
    if not mapping:
        return []
    known: dict[int, str] = {}
    if card is not None:
        known = dict(enumerate(card.class_names)) if card.class_names else dict(
            card.known_class_names)
    names, missing, filled = [], [], []
    for i in range(max(mapping) + 1):
        if i in mapping:
            names.append(mapping[i][0])
        elif i == ignore:
            names.append("ignore")
        elif i in known:
            names.append(known[i])
            filled.append(i)
        else:
            missing.append(i)
    if missing:
        shown = ", ".join(str(i) for i in missing[:10]) + (", ..." if len(missing) > 10 else "")
        raise DataError("mapping.json: class ids have gaps", dataset=card.name if card else None,
                        path=path, value=f"missing {shown} of 0..{max(mapping)}",
                        fix=f'add the missing ids with their names (e.g. "{missing[0]}": '
                            '"<name>") so no class name is invented')
    if filled and notes is not None:
        notes.append(f"mapping.json has no entry for ids {filled}; names taken from the card")
    return names


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
