"""``file:<path>`` model names: an encoder checkpoint `marsbench pretrain` wrote, as a model.

``marsbench run --model file:runs/pretrain/encoder.safetensors ...`` builds the architecture the
checkpoint was pretrained from (named in the ``pretrain.json`` written beside it) and loads the
file as that model's weights, exactly as ``--model <architecture> --weights <file>`` does. The
weights' identity is the file's sha256 (feature caches and run records follow its content).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from .registry import UnknownModelError, get_spec, register_prefix
from .spec import ModelSpec, WeightSource

PREFIX = "file:"
RECORD_FILE = "pretrain.json"  # what `marsbench pretrain` writes beside its encoder


def file_spec(path_text: str) -> ModelSpec:
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise UnknownModelError("no checkpoint file at this path", value=PREFIX + path_text,
                                fix="give the encoder file `marsbench pretrain` wrote, e.g. "
                                    "file:runs/pretrain/encoder.safetensors")
    record = path.with_name(RECORD_FILE)
    try:
        base_name = json.loads(record.read_text())["encoder"]["loads_as"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UnknownModelError(
            f"a file: model needs the {RECORD_FILE} `marsbench pretrain` writes beside the "
            "checkpoint (it names the architecture)", value=PREFIX + path_text,
            fix="or use --model <architecture> --weights PATH") from None
    if not base_name:
        raise UnknownModelError("this encoder was pretrained with a custom architecture that "
                                "no registry name builds", value=PREFIX + path_text,
                                fix="load it in Python (models.classifier.load_checkpoint)")
    from .weights import file_sha256

    base = get_spec(base_name)
    return dataclasses.replace(
        base, name=PREFIX + path_text,
        weights=WeightSource(kind="file", tag=f"sha256:{file_sha256(path)}",
                             filename=str(path.resolve())))


register_prefix(PREFIX, file_spec, lambda: [])
