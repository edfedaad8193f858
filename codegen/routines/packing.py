"""Compile-time weight layouts shared by the vector routines."""

from __future__ import annotations

import numpy as np

from ..ir import Graph, Layer


def panels(matrix: np.ndarray, nr: int) -> np.ndarray:
    """[..., K, M] -> [..., M/NR, K, NR]: NR-wide column panels, M zero-padded to a multiple of NR."""
    *lead, k, m = matrix.shape
    padded = -(-m // nr) * nr
    full = np.zeros((*lead, k, padded), np.float32)
    full[..., :m] = matrix
    split = full.reshape(*lead, k, padded // nr, nr)
    return np.ascontiguousarray(np.moveaxis(split, -2, -3))


def padded_bias(layer: Layer, graph: Graph, multiple: int) -> np.ndarray | None:
    """The layer's bias zero-padded to a multiple of `multiple` (None when it has none)."""
    if len(layer.inputs) < 3 or not layer.inputs[2]:
        return None
    data = graph.tensor(layer.inputs[2]).data
    bias = np.zeros(-(-data.size // multiple) * multiple, np.float32)
    bias[:data.size] = data
    return bias
