"""A 2-D projection of item vectors, for the plots of stage 2 and of the evaluation report."""

from __future__ import annotations

import numpy as np


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2-D PCA by SVD: (coordinates (n, 2), explained variance ratio of the two components)."""
    centred = x - x.mean(axis=0, keepdims=True)
    _, sv, vt = np.linalg.svd(centred, full_matrices=False)
    var = sv**2
    return centred @ vt[:2].T, var[:2] / max(var.sum(), 1e-12)
