"""The dataset catalog: one declarative card per Mars-Bench dataset."""

from __future__ import annotations

from ..errors import MarsbenchError, did_you_mean
from .card import FEW_SHOT_K, PARTITIONS, DatasetCard, Platform, Task, TaskKind
from .cards import CARDS
from .variant import Variant

_BY_NAME = {card.name: card for card in CARDS}


class UnknownDatasetError(MarsbenchError, KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


def list_cards(task: Task | str | None = None) -> list[DatasetCard]:
    return [c for c in CARDS if task is None or c.task == Task(task)]


def get_card(name: str) -> DatasetCard:
    """The card of a Mars-Bench dataset, with a "did you mean" error for a typo."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UnknownDatasetError(
            "unknown dataset", value=name,
            fix=f"{did_you_mean(str(name), _BY_NAME)} (`marsbench datasets list` lists all "
                f"{len(_BY_NAME)}; a folder in the Mars-Bench layout works too)") from None


__all__ = [
    "CARDS", "FEW_SHOT_K", "PARTITIONS", "DatasetCard", "Platform", "Task", "TaskKind",
    "UnknownDatasetError", "Variant", "get_card", "list_cards",
]
