"""The one way marsbench reads YAML (experiment files, VLM prompts): safe, and bounded.

``yaml.safe_load`` constructs no Python objects, but it still expands aliases: a nine-line
"billion laughs" file (anchors referring to lists of anchors) becomes 10^9 list items and
exhausts memory, and walking the composed node graph costs as much. Nothing marsbench reads
needs anchors or aliases, so `SafeLoader` here refuses every alias (``*name``, including merge
keys ``<<: *name``) at the place it appears; it also caps nesting depth and the text's size.
Errors are `yaml.YAMLError` subclasses with a line mark, so callers' existing handlers report
them like any syntax error.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_YAML_CHARS = 1_000_000  # an experiment or prompt file is a few kilobytes
MAX_YAML_DEPTH = 100


class UnsafeYAMLError(yaml.composer.ComposerError):
    """YAML refused for safety: an alias, too deep a nesting, or too large a text."""


class SafeLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` without aliases and with a nesting limit."""

    def compose_node(self, parent, index):  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise UnsafeYAMLError(
                None, None,
                f"alias *{event.anchor} refused: anchors and aliases are not allowed in "
                "marsbench YAML (they can expand without bound); write the values out",
                event.start_mark)
        depth = getattr(self, "_marsbench_depth", 0) + 1
        if depth > MAX_YAML_DEPTH:
            raise UnsafeYAMLError(None, None, f"nesting deeper than {MAX_YAML_DEPTH} levels",
                                  self.peek_event().start_mark)
        self._marsbench_depth = depth
        try:
            return super().compose_node(parent, index)
        finally:
            self._marsbench_depth = depth - 1


def _check_size(text: str | bytes) -> None:
    if len(text) > MAX_YAML_CHARS:
        raise UnsafeYAMLError(None, None, f"YAML text is {len(text)} characters; the limit is "
                              f"{MAX_YAML_CHARS}", None)


def safe_load(text: str | bytes) -> Any:
    """Like ``yaml.safe_load`` on a string, minus aliases (see the module doc)."""
    _check_size(text)
    return yaml.load(text, Loader=SafeLoader)  # noqa: S506 - SafeLoader subclass


def compose(text: str | bytes) -> yaml.Node | None:
    """Like ``yaml.compose(text, Loader=yaml.SafeLoader)`` (node tree with line marks)."""
    _check_size(text)
    return yaml.compose(text, Loader=SafeLoader)
