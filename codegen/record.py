"""The tuning record: the routine path and what it was chosen from, as a JSON lockfile."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from . import __version__
from .ir import Graph

RECORD_FORMAT = "neurogen-tuning-record"
RECORD_VERSION = 1


def canonical(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [canonical(v) for v in value]
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in sorted(value.items())}
    if hasattr(value, "__dataclass_fields__"):
        return {k: canonical(getattr(value, k)) for k in sorted(value.__dataclass_fields__)}
    if hasattr(value, "value") and hasattr(value, "name"):  # enums
        return value.value
    if isinstance(value, float):
        return repr(value)
    return value


def graph_hash(graph: Graph) -> str:
    """A hash of what the graph computes: layers, attributes, shapes and weight bytes."""
    h = hashlib.sha256()
    for layer in graph.layers:
        item = [layer.kind, layer.inputs, layer.outputs, canonical(layer.attrs)]
        h.update(json.dumps(item, sort_keys=True).encode())
    for name in sorted(graph.tensors):
        t = graph.tensors[name]
        h.update(f"{name}:{t.shape}:{t.dtype.value}".encode())
        if t.data is not None:
            h.update(t.data.tobytes())
    h.update(json.dumps([graph.inputs, graph.outputs]).encode())
    return h.hexdigest()


def make_record(graph: Graph, target: dict[str, Any], path: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "format": RECORD_FORMAT,
        "version": RECORD_VERSION,
        "tool": {"name": "neurogen", "version": __version__},
        "model": {"name": graph.name, "graph_sha256": graph_hash(graph)},
        "target": target,
        "path": path,
        "adapts": [],
    }


def dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, indent=2, sort_keys=True) + "\n"
