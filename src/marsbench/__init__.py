"""marsbench: the Mars-Bench benchmark for vision foundation models on Mars science tasks.

The main entry points load on first use (PEP 562), so ``import marsbench`` stays fast and does
not import torch::

    import marsbench

    ds = marsbench.open_dataset("mb-domars16k", "train", root="data",
                                transform=marsbench.to_tensors)
    model = marsbench.create_model("efficientnet_lite0", num_classes=15, regime="fine_tuning")
    table = marsbench.evaluate("mb-domars16k", "efficientnet_lite0", "scratch", root="data")

See docs/api.md.
"""

import importlib as _importlib

__version__ = "0.1.0"

# name -> the module that defines it (imported on first access)
_LAZY = {
    "open_dataset": "marsbench.sources.open",
    "MarsDataset": "marsbench.sources.dataset",
    "to_tensors": "marsbench.sources.dataset",
    "collate_detection": "marsbench.sources.dataset",
    "RunSpec": "marsbench.runs.spec",
    "ResultsStore": "marsbench.runs.store",
    "run_experiment": "marsbench.training.run",
    "create_model": "marsbench.api",
    "evaluate": "marsbench.api",
    "list_models": "marsbench.api",
    "list_datasets": "marsbench.api",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:  # AttributeError (not another error): `from marsbench import io` needs it
        raise AttributeError(f"module 'marsbench' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    public = {n for n in globals() if n.startswith("__") or not n.startswith("_")}
    return sorted(public | set(__all__))
