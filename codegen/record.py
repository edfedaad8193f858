"""The tuning record: the routine path and what it was chosen from, as a JSON lockfile."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from . import __version__
from .errors import OutputError
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


def is_record_file(path: Path) -> bool:
    """Whether `path` holds a tuning record (so neurogen wrote it, and may replace it)."""
    try:
        return json.loads(path.read_text()).get("format") == RECORD_FORMAT
    except (OSError, ValueError, UnicodeDecodeError, AttributeError):
        return False


def check_writable(path: str | os.PathLike) -> Path:
    """`path` if a record may be written there (it is new, or a tuning record); else an OutputError."""
    out = Path(path)
    if out.is_symlink() or (out.exists() and (not out.is_file() or not is_record_file(out))):
        raise OutputError(f"{out}: exists and is not a tuning record; neurogen does not overwrite it. "
                          "Give -o a new file name (or a record written by 'neurogen tune')")
    return out


def write(record: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write `record` to `path` atomically (a temporary sibling, then a rename). An existing file is replaced
    only if it is a tuning record: neurogen never overwrites a file it did not write."""
    out = check_writable(path)
    tmp = out.with_name(f".{out.name[:200]}.{os.getpid()}.tmp")
    try:
        tmp.write_text(dumps(record))
        tmp.replace(out)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise OutputError(f"{out}: cannot write the tuning record ({exc.strerror})") from None
    return out
