"""The model registry: one mechanism for every task's `ModelSpec`.

Named specs are added with `register`; families addressed by a prefix (``timm:<name>``) are
added with `register_prefix`, whose resolver builds the spec on demand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..catalog.card import Task
from ..errors import MarsbenchError, OptionError, did_you_mean
from .spec import ModelSpec

_SPECS: dict[str, ModelSpec] = {}
_PREFIXES: dict[str, tuple[Callable[[str], ModelSpec], Callable[[], Iterable[str]]]] = {}


class UnknownModelError(MarsbenchError, KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


def register(spec: ModelSpec) -> ModelSpec:
    """Add a named spec; a second spec with the same name is an error."""
    if spec.name in _SPECS:
        raise ValueError(f"model {spec.name!r} is already registered")
    if any(spec.name.startswith(p) for p in _PREFIXES):
        raise ValueError(f"model name {spec.name!r} collides with a registered prefix")
    _SPECS[spec.name] = spec
    return spec


def register_prefix(
    prefix: str, resolve: Callable[[str], ModelSpec], known: Callable[[], Iterable[str]]
) -> None:
    """Resolve ``<prefix><name>`` with ``resolve(name)``; ``known()`` lists valid names, for
    "did you mean" hints. ``resolve`` raises `UnknownModelError` for a name it cannot build."""
    _PREFIXES[prefix] = (resolve, known)


def get_spec(name: str) -> ModelSpec:
    """The spec of a model, with a "did you mean" error for a typo."""
    if name in _SPECS:
        return _SPECS[name]
    for prefix, (resolve, _known) in _PREFIXES.items():
        if name.startswith(prefix):
            return resolve(name[len(prefix):])
    prefixes = ", ".join(f"{p}<name>" for p in _PREFIXES)
    raise UnknownModelError(
        "unknown model", value=name,
        fix=f"{did_you_mean(name, _SPECS)} (`marsbench models list` lists the registered "
            "models" + (f"; also accepted: {prefixes})" if prefixes else ")"))


def unknown_in_family(prefix: str, name: str, known: Iterable[str]) -> UnknownModelError:
    """The error for ``<prefix><name>`` that its family does not know, with close matches."""
    return UnknownModelError("unknown model", value=prefix + name,
                             fix=did_you_mean(prefix + name, [prefix + k for k in known]))


def list_specs(task: Task | str | None = None) -> list[ModelSpec]:
    """Registered named specs (prefix families are not enumerated), optionally of one task."""
    return [s for s in _SPECS.values() if task is None or s.task == Task(task)]


def registered_prefixes() -> list[str]:
    return list(_PREFIXES)


HEAD_REGIMES = ("scratch", "feature_extraction", "fine_tuning")  # the regimes that train a head


def spec_for_run(spec: ModelSpec, profile: str = "marsbench", regime: str | None = None
                 ) -> ModelSpec:
    """The spec a run builds: under the ``paper`` profile a run that trains a head uses the
    spec's ``paper_variant`` (the reference's head; docs/fidelity.md row 12). A spec whose
    backbone gives a feature map (head not ``pooled``) cannot feed a probe: refused."""
    if regime is not None and str(regime) not in HEAD_REGIMES:
        if not spec.head.pooled:
            base = next((s.name for s in _SPECS.values() if s.paper_variant == spec.name), None)
            raise OptionError(
                "no pooled features for a probe", option="model", where=f"regime {regime}",
                value=spec.name,
                fix=f"its backbone gives the feature map of its {spec.head.name} head; use "
                    f"{base or 'another model'} for probes, or a regime that trains a head "
                    f"({', '.join(HEAD_REGIMES)})")
        return spec
    if profile == "paper" and spec.paper_variant:
        return get_spec(spec.paper_variant)
    return spec
