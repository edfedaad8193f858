"""Weight packing for the GEMM micro-kernels: where each weight lands (the C indexes it this way)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from codegen.routines.packing import panels


@pytest.mark.parametrize(("k", "m", "nr", "kc"), [(7, 5, 4, None), (10, 9, 4, 4), (12, 8, 8, 4), (5, 3, 4, 8)])
def test_panels_place_every_weight_where_the_micro_kernel_reads_it(k, m, nr, kc):
    matrix = np.arange(1, k * m + 1, dtype=np.float32).reshape(k, m)
    packed = panels(matrix, nr, kc).reshape(-1)
    count = -(-m // nr)
    assert packed.size == k * count * nr
    for kk, col in itertools.product(range(k), range(count * nr)):
        panel, lane = divmod(col, nr)
        if kc is None or kc >= k:  # [M/NR][K][NR]
            index = (panel * k + kk) * nr + lane
        else:  # block-major: the block starting at k0 holds every panel's [block length][NR] in turn
            k0 = kk // kc * kc
            length = min(kc, k - k0)
            index = k0 * count * nr + (panel * length + kk - k0) * nr + lane
        assert packed[index] == (matrix[kk, col] if col < m else 0.0), (kk, col)
