"""Reading a model's free-text answer as class ids.

Written by hand because no library maps free text onto a closed, dataset-specific label set with
these rules (codes, names, aliases, a sentence around the label, negations, lists).

Every class is known by its label, its name and its aliases (the prompt file), all compared
after `normalise` (case, punctuation, ``_``/``-`` ignored), with simple plural/singular variants.
Mentions are whole-word matches; where two overlap the longer wins ("no frost" over "frost",
"mastcam cal target" over "mastcam"). A mention right after a negation ("not", "no",
"without", "isn't") is dropped, unless the negation is part of the label itself.

Single label, in order: the whole answer (after an "answer:"-style prefix) is a class; else the
answer starts with a class; else exactly one class is mentioned. Anything else — nothing
recognised, or several classes with none leading — is unparseable (None).

Multi-label / presence: every class mentioned. No class mentioned is an empty prediction when the
answer says so ("none", "no classes", "nothing", "[]"), otherwise unparseable (None).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .prompts import PromptLabel, normalise

NEGATIONS = {"not", "no", "without", "neither", "nor", "never", "absent"}
SKIPPABLE = {"a", "an", "the", "any", "of"}
PREFIX = re.compile(
    r"^(?:(?:the|my|final|predicted|most|likely|best|image|this|is|it|s)\s+)*"
    r"(?:answer|label|labels|class|classes|classification|category|prediction)"
    r"(?:\s+(?:is|are))?\s+")
EMPTY_ANSWERS = {"", "none", "nothing", "no classes", "none of them", "none of the above",
                 "no class", "no labels", "empty", "n a", "na", "no class is present",
                 "none are present", "none present", "no classes are present"}


def forms_of(labels: Sequence[PromptLabel]) -> dict[str, int]:
    """Normalised surface form -> class id; a form shared by two classes is dropped (ambiguous)."""
    owners: dict[str, set[int]] = {}
    for lab in labels:
        for form in lab.forms():
            for variant in _variants(form):
                owners.setdefault(variant, set()).add(lab.class_id)
    exact = {normalise(lab.label): lab.class_id for lab in labels}
    out = {f: next(iter(ids)) for f, ids in owners.items() if len(ids) == 1}
    out.update(exact)  # a label always names its own class
    return out


def mentions(text: str, labels: Sequence[PromptLabel]) -> list[tuple[int, int]]:
    """(position, class id) of every non-negated class mention in ``text``, in reading order."""
    norm = normalise(text)
    forms = forms_of(labels)
    found = []
    for form, cid in forms.items():
        for m in re.finditer(rf"(?<![0-9a-z]){re.escape(form)}(?![0-9a-z])", norm):
            found.append((m.start(), m.end(), cid))
    found.sort(key=lambda s: (-(s[1] - s[0]), s[0]))
    kept: list[tuple[int, int, int]] = []
    for s in found:
        if all(s[1] <= k[0] or s[0] >= k[1] for k in kept):
            kept.append(s)
    kept.sort()
    return [(start, cid) for start, end, cid in kept if not _negated(norm, start)]


def parse_single(text: str | None, labels: Sequence[PromptLabel]) -> int | None:
    """The class id a single-label answer names, or None if it cannot be read (module doc)."""
    if not text:
        return None
    body = PREFIX.sub("", normalise(text))
    forms = forms_of(labels)
    if body in forms:
        return forms[body]
    found = mentions(body, labels)
    if not found:
        return None
    if found[0][0] == 0:
        return found[0][1]
    ids = {cid for _, cid in found}
    return ids.pop() if len(ids) == 1 else None


def parse_multi(text: str | None, labels: Sequence[PromptLabel]) -> tuple[int, ...] | None:
    """The sorted class ids a multi-label answer names; () for "none"; None if unreadable."""
    if text is None:
        return None
    body = PREFIX.sub("", normalise(text))
    ids = sorted({cid for _, cid in mentions(body, labels)})
    if ids:
        return tuple(ids)
    return () if body in EMPTY_ANSWERS or text.strip() in ("[]", "{}") else None


def _variants(form: str) -> set[str]:
    out = {form}
    if len(form) <= 3:  # codes such as "ael": no plural games
        return out
    if form.endswith("ies"):
        out.add(form[:-3] + "y")
    elif form.endswith("s") and not form.endswith("ss"):
        out.add(form[:-1])
    elif form.endswith("y"):
        out.add(form[:-1] + "ies")
    else:
        out.add(form + "s")
    return out


def _negated(norm: str, start: int) -> bool:
    words = norm[:start].split()[-3:]
    while words and words[-1] in SKIPPABLE:
        words.pop()
    if not words:
        return False
    last = words[-1]
    if last in NEGATIONS:
        return True
    return last == "t" and len(words) > 1 and words[-2].endswith("n")  # isn't, doesn't, aren't
