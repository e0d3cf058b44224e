"""A row-vector transform that stays fast on a busy machine."""

from __future__ import annotations

import numpy as np


def transform(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``x @ m`` for x: (N, D) and m: (D, K) with small K, as K matrix-vector products.

    OpenBLAS runs a tall-skinny matrix product multi-threaded; on a loaded 2-core machine that
    costs ~20 ms for 77k rows, while the matrix-vector products stay single-threaded (~1 ms).
    """
    out = np.empty((x.shape[0], m.shape[1]), dtype=np.result_type(x, m))
    for k in range(m.shape[1]):
        out[:, k] = x @ m[:, k]
    return out
