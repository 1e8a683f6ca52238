"""Prompt files: one versioned YAML per dataset, rendered against the data's own class names.

A prompt file (``prompts/<dataset>.yaml``) holds the wording (``system``, ``context``,
``question``, ``answer``) and what is known about each class (``label``, ``name``,
``description``, ``aliases``, ``group``). Rendering takes the class names read from the data:

- ``classes_from: fixed`` — the file's labels are the published class list; the data's names must
  match them one to one, in index order, or rendering refuses (a silent reorder would relabel
  every answer).
- ``classes_from: data`` — the class list is the data's (``MarsDataset.class_names``); a class the
  file knows (by label, name or alias) gets its description, any other is listed by its name only.
  Nothing is invented: names that are only placeholders (``class_22``) are not offered.

``task`` is ``single_label`` (answer one label), ``multi_label`` (every label that applies) or
``presence`` (segmentation recast as "which of these classes are present"; ``exclude`` lists the
classes never asked about, such as background). The rendered `Prompt` carries ``version`` and the
sha256 of its text, which results record.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from ..errors import MarsbenchError

TaskFormat = Literal["single_label", "multi_label", "presence"]
TASK_FORMATS = ("single_label", "multi_label", "presence")
TOP_LEVEL_KEYS = {"version", "dataset", "task", "classes_from", "system", "context", "question",
                  "answer", "classes", "exclude", "images"}
PLACEHOLDER_NAME = re.compile(r"class_\d+")
GENERIC = {"single_label": "_generic_single_label", "multi_label": "_generic_multi_label",
           "presence": "_generic_presence"}


class PromptError(MarsbenchError, ValueError):
    """A prompt file is malformed or does not fit the dataset's classes."""


def normalise(text: str) -> str:
    """Lower case, every run of non-alphanumerics one space: ``"Not_Dusty!"`` -> ``"not dusty"``."""
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text.lower()).split())


@dataclass(frozen=True)
class ClassInfo:
    """What a prompt file knows about one class."""

    label: str
    name: str | None = None
    description: str | None = None
    aliases: tuple[str, ...] = ()
    group: str | None = None

    def forms(self) -> set[str]:
        """Normalised words that refer to this class (label, name, aliases)."""
        return {normalise(t) for t in (self.label, self.name or "", *self.aliases) if normalise(t)}


@dataclass(frozen=True)
class PromptLabel:
    """One class offered to the model: its index in the dataset and the words that name it."""

    class_id: int
    label: str
    info: ClassInfo | None = None

    def forms(self) -> set[str]:
        out = {normalise(self.label)}
        if self.info is not None:
            out |= self.info.forms()
        return out - {""}


@dataclass(frozen=True)
class Prompt:
    """A prompt rendered for one dataset's class list: what is sent, and how to read answers."""

    dataset: str
    version: str
    task: TaskFormat
    system: str
    user: str
    labels: tuple[PromptLabel, ...]
    num_classes: int  # classes in the dataset (ids of ``labels`` are < this)
    image_captions: tuple[str, ...] = ()

    @property
    def sha256(self) -> str:
        text = "\0".join((self.version, self.task, self.system, self.user, *self.image_captions))
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def label_names(self) -> list[str]:
        return [lab.label for lab in self.labels]


@dataclass(frozen=True)
class PromptTemplate:
    """A parsed prompt file; `render` turns it into a `Prompt` for the data's class names."""

    dataset: str
    version: str
    task: TaskFormat
    classes_from: Literal["fixed", "data"]
    system: str
    context: str
    question: str
    answer: str
    classes: tuple[ClassInfo, ...] = ()
    exclude: tuple[str, ...] = ()
    images: tuple[str, ...] = ()
    source: str = ""

    def render(self, class_names: Sequence[str], *, dataset: str | None = None,
               image_captions: Sequence[str] | None = None,
               class_aliases: Mapping[int, Sequence[str]] | None = None) -> Prompt:
        """The prompt for a dataset whose classes (index order) are ``class_names``.

        ``class_aliases`` (id -> other names the data gives, e.g. ``[code, name]`` from a
        mapping.json) help match a class to this file's entries and, for a class the file does
        not know, name it beside its label.
        """
        name = dataset or self.dataset
        labels = self._labels([str(c) for c in class_names], name, class_aliases or {})
        if not labels:
            raise PromptError(f"{self.source}: no class of {name} is left to ask about "
                              f"(class names {list(class_names)}, excluded {list(self.exclude)})")
        captions = tuple(image_captions) if image_captions is not None else self.images
        return Prompt(dataset=name, version=self.version, task=self.task,
                      system=self.system.strip(), user=self._user_text(labels),
                      labels=tuple(labels), num_classes=len(class_names),
                      image_captions=captions)

    # -- helpers ------------------------------------------------------------------------------
    def _labels(self, names: list[str], dataset: str,
                aliases: Mapping[int, Sequence[str]]) -> list[PromptLabel]:
        excluded = {normalise(e) for e in self.exclude}
        if self.classes_from == "fixed":
            expected = [c.label for c in self.classes]
            if len(names) != len(expected) or any(
                    normalise(n) not in c.forms() for n, c in zip(names, self.classes)):
                raise PromptError(
                    f"{self.source}: the classes of {dataset} read from the data {names} do not "
                    f"match this prompt's fixed list {expected} (same order required); fix the "
                    "data's mapping or pass a prompt file that fits it (--prompt FILE)")
            pairs = list(zip(range(len(names)), self.classes))
            return [PromptLabel(i, c.label, c) for i, c in pairs
                    if not (c.forms() & excluded)]
        by_form: dict[str, ClassInfo] = {}
        for info in self.classes:
            for form in info.forms():
                by_form.setdefault(form, info)
        out = []
        for i, n in enumerate(names):
            key = normalise(n)
            if key in excluded or PLACEHOLDER_NAME.fullmatch(n.strip()) or not key:
                continue
            if key.replace(" ", "").isdigit():
                raise PromptError(
                    f"class {i} of {dataset} is named {n!r}: a number tells the model nothing. "
                    "Give the data a mapping.json with class names, or pass a prompt file with "
                    "classes_from: fixed (--prompt FILE)")
            others = [str(a) for a in aliases.get(i, ()) if normalise(str(a)) != key]
            info = next((by_form[f] for f in (key, *map(normalise, others)) if f in by_form), None)
            if info is not None and info.forms() & excluded:
                continue
            if info is None and others:  # known only from the data: its own other names
                info = ClassInfo(label=n, name=others[0], aliases=tuple(others))
            out.append(PromptLabel(i, n, info))
        return out

    def _user_text(self, labels: list[PromptLabel]) -> str:
        lines: list[str] = []
        group = None
        group_of = {lab.class_id: lab.info.group if lab.info else None for lab in labels}
        order = list(dict.fromkeys(group_of.values()))  # groups in order of first appearance
        for lab in sorted(labels, key=lambda lab: order.index(group_of[lab.class_id])):
            info = lab.info
            if info is not None and info.group and info.group != group:
                group = info.group
                lines.append(f"{group}:")
            text = f"- {lab.label}"
            if info is not None and info.name and normalise(info.name) != normalise(lab.label):
                text += f" ({info.name})"
            if info is not None and info.description:
                text += f": {info.description.strip()}"
            lines.append(text)
        answer = self.answer.strip().replace("{labels}", ", ".join(lab.label for lab in labels))
        parts = [self.context.strip(), self.question.strip(), "\n".join(lines), answer]
        return "\n\n".join(p for p in parts if p)


# -- loading ------------------------------------------------------------------------------------


def prompt_path(dataset: str) -> Path | None:
    """The packaged prompt file of a catalog dataset, or None."""
    path = resources.files("marsbench.vlm") / "prompts" / f"{dataset}.yaml"
    return Path(str(path)) if path.is_file() else None


def packaged_prompts() -> list[str]:
    """Names of the datasets with a packaged prompt file."""
    folder = resources.files("marsbench.vlm") / "prompts"
    return sorted(p.name[:-5] for p in folder.iterdir()
                  if p.name.endswith(".yaml") and not p.name.startswith("_"))


def load_prompt(dataset_or_path: str | Path, *, task: TaskFormat | None = None) -> PromptTemplate:
    """A prompt template: a YAML path, a packaged dataset prompt, or the generic one for ``task``.

    A dataset without a packaged prompt (a user's own folder) gets the generic prompt of its task
    format, which renders from the data's class names.
    """
    path = Path(dataset_or_path)
    if not path.is_file():
        path = prompt_path(str(dataset_or_path))  # type: ignore[assignment]
        if path is None:
            if task is None:
                raise PromptError(
                    f"no prompt file for {dataset_or_path!r}; packaged prompts: "
                    f"{', '.join(packaged_prompts())}. Pass --prompt FILE (see docs/vlm.md)")
            path = prompt_path(GENERIC[task])  # type: ignore[assignment]
    from ..yaml_io import safe_load  # no aliases (see marsbench.yaml_io)

    try:
        data = safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise PromptError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    template = parse_prompt(data, source=str(path))
    if task is not None and template.task != task:
        raise PromptError(
            f"{path}: prompt task is {template.task!r} but the dataset needs {task!r}")
    return template


def parse_prompt(data: Any, *, source: str = "<prompt>") -> PromptTemplate:
    """Check and parse the YAML mapping of a prompt file."""
    if not isinstance(data, dict):
        raise PromptError(f"{source}: a prompt file must be a YAML mapping")
    unknown = sorted(set(data) - TOP_LEVEL_KEYS)
    if unknown:
        raise PromptError(f"{source}: unknown field(s) {unknown}; known: {sorted(TOP_LEVEL_KEYS)}")
    missing = [k for k in ("version", "dataset", "task", "system", "question", "answer")
               if not data.get(k)]
    if missing:
        raise PromptError(f"{source}: missing field(s) {missing}")
    if data["task"] not in TASK_FORMATS:
        raise PromptError(f"{source}: task {data['task']!r}; use one of {TASK_FORMATS}")
    classes_from = data.get("classes_from", "data")
    if classes_from not in ("fixed", "data"):
        raise PromptError(f"{source}: classes_from {classes_from!r}; use 'fixed' or 'data'")
    classes = []
    for i, entry in enumerate(data.get("classes") or []):
        if not isinstance(entry, dict) or not entry.get("label"):
            raise PromptError(f"{source}: classes[{i}] needs a 'label'")
        unknown = set(entry) - {"label", "name", "description", "aliases", "group"}
        if unknown:
            raise PromptError(f"{source}: classes[{i}] has unknown keys {sorted(unknown)}")
        classes.append(ClassInfo(
            label=str(entry["label"]), name=entry.get("name"),
            description=entry.get("description"),
            aliases=tuple(str(a) for a in entry.get("aliases") or ()), group=entry.get("group")))
    if classes_from == "fixed" and not classes:
        raise PromptError(f"{source}: classes_from: fixed needs the class list")
    return PromptTemplate(
        dataset=str(data["dataset"]), version=str(data["version"]), task=data["task"],
        classes_from=classes_from, system=str(data["system"]), context=str(data.get("context", "")),
        question=str(data["question"]), answer=str(data["answer"]), classes=tuple(classes),
        exclude=tuple(str(e) for e in data.get("exclude") or ()),
        images=tuple(str(c) for c in data.get("images") or ()), source=source)
