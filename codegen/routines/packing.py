"""Compile-time weight layouts shared by the vector routines."""

from __future__ import annotations

import numpy as np

from ..ir import Graph, Layer


def panels(matrix: np.ndarray, nr: int, kc: int | None = None) -> np.ndarray:
    """[..., K, M] -> [..., M/NR, K, NR]: NR-wide column panels, M zero-padded to a multiple of NR.
    With `kc` < K (a K-blocked GEMM), block-major instead, flat: for each block of kc k steps (the last one
    maybe shorter), every panel's [kc][NR] slice in turn, so the GEMM reads its weights front to back (one
    stream the hardware prefetcher follows, not one per panel)."""
    *lead, k, m = matrix.shape
    padded = -(-m // nr) * nr
    full = np.zeros((*lead, k, padded), np.float32)
    full[..., :m] = matrix
    split = np.moveaxis(full.reshape(*lead, k, padded // nr, nr), -2, -3)
    if kc is None or kc >= k:
        return np.ascontiguousarray(split)
    blocks = [split[..., k0:k0 + kc, :].reshape(*lead, -1) for k0 in range(0, k, kc)]
    return np.ascontiguousarray(np.concatenate(blocks, axis=-1))


def padded_bias(layer: Layer, graph: Graph, multiple: int) -> np.ndarray | None:
    """The layer's bias zero-padded to a multiple of `multiple` (None when it has none)."""
    if len(layer.inputs) < 3 or not layer.inputs[2]:
        return None
    data = graph.tensor(layer.inputs[2]).data
    bias = np.zeros(-(-data.size // multiple) * multiple, np.float32)
    bias[:data.size] = data
    return bias
