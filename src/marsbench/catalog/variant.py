"""Training-set variants: the full set, few-shot k images per class, or a fraction p."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Variant:
    """``full``, ``few_shot:<k>`` or ``partition:<p>``. Only the train split changes."""

    kind: Literal["full", "few_shot", "partition"] = "full"
    value: float | int | None = None

    @classmethod
    def parse(cls, text: "str | Variant | None") -> "Variant":
        if text is None or isinstance(text, Variant):
            return text or cls()
        text = text.strip()
        if text in ("", "full", "default", "partition:1", "partition:1.0", "partition:1.00"):
            return cls()
        m = re.fullmatch(r"(few_shot|few-shot|fewshot):(\d+)", text)
        if m and int(m.group(2)) >= 1:
            return cls("few_shot", int(m.group(2)))
        m = re.fullmatch(r"partition:(0?\.\d+|\d+(\.\d+)?)", text)
        # kept exact (never rounded onto another published fraction), to 4 decimals at most
        if m and 0 < float(m.group(1)) < 1 and round(float(m.group(1)), 4) == float(m.group(1)):
            return cls("partition", float(m.group(1)))
        raise ValueError(
            f"bad variant {text!r}: use 'full', 'few_shot:<k>' with k >= 1 (e.g. few_shot:5) or "
            "'partition:<p>' with 0 < p < 1 and at most 4 decimals (e.g. partition:0.10)"
        )

    @property
    def is_full(self) -> bool:
        return self.kind == "full"

    def __str__(self) -> str:
        if self.kind == "full":
            return "full"
        if self.kind == "few_shot":
            return f"few_shot:{self.value}"
        return f"partition:{self.fraction_text}"

    @property
    def fraction_text(self) -> str:
        """The partition fraction as the published files spell it (``0.10``), exactly."""
        text = f"{self.value:.2f}"
        return text if float(text) == self.value else f"{self.value:.4f}".rstrip("0")

    # Names of the published files / splits -------------------------------------------------
    @property
    def folder_csv(self) -> str:
        """Path of the variant CSV inside a Zenodo dataset folder."""
        if self.kind == "few_shot":
            return f"few_shot/{self.value}_shot.csv"
        if self.kind == "partition":
            return f"partitions/{self.fraction_text}x_partition.csv"
        return "annotation.csv"

    @property
    def hf_splits(self) -> tuple[str, ...]:
        """Candidate names of the train split in a Hugging Face repo, preferred first."""
        if self.kind == "few_shot":
            return (f"few_shot_train_{self.value}_shot",)
        if self.kind == "partition":
            p = f"{self.fraction_text}x_partition"
            return (f"partition_train_{p}", p)
        return ("train",)
