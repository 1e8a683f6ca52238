"""The dataset catalog: one declarative card per Mars-Bench dataset."""

from __future__ import annotations

import difflib

from .card import FEW_SHOT_K, PARTITIONS, DatasetCard, Platform, Task, TaskKind
from .cards import CARDS
from .variant import Variant

_BY_NAME = {card.name: card for card in CARDS}


class UnknownDatasetError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


def list_cards(task: Task | str | None = None) -> list[DatasetCard]:
    return [c for c in CARDS if task is None or c.task == Task(task)]


def get_card(name: str) -> DatasetCard:
    """The card of a Mars-Bench dataset, with a "did you mean" error for a typo."""
    try:
        return _BY_NAME[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_BY_NAME), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise UnknownDatasetError(
            f"unknown dataset {name!r}.{hint} Run `marsbench datasets list` for all 20."
        ) from None


__all__ = [
    "CARDS", "FEW_SHOT_K", "PARTITIONS", "DatasetCard", "Platform", "Task", "TaskKind",
    "UnknownDatasetError", "Variant", "get_card", "list_cards",
]
