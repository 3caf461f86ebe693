"""Reverse-engineering a learned high-dimensional layout (seed 000 §2.4, appendix C.3).

C.3 asks whether the model learned an LSH-like solution: fit one-vs-rest logistic
regressions that predict the first query model's lookup position from the query, run
PCA on the classifiers' coefficient vectors, and see how many components explain them
("the top 2 principal components explain all of the variance": a partition by
projection onto two vectors). The inputs are then projected onto the same components,
coloured by the position the data network put them in (Figure 19).

`lookup_components` does the regressions and the PCA; `layout_agreement` measures the
data side as one number (ours; the paper shows it only as a picture): the mean over
instances of |Spearman| between each point's position and its projection onto the
first component. Near 1 means the data network sorts along that one direction (a 1D
layout, as in the 1D settings); a hash-like or angular layout over two components
scores lower.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_QUERIES = 4000  # the regressions see at most this many queries (a few seconds at N=100)


@dataclass
class Components:
    explained: np.ndarray  # [k] explained-variance ratio of each principal component, descending
    axes: np.ndarray  # [k, d] the components (unit rows)


def lookup_components(queries: np.ndarray, positions: np.ndarray, seed: int = 0) -> Components | None:
    """C.3 on queries [B, d] and the first lookup's positions [B]. None when the lookup
    takes fewer than 3 distinct positions (no spread of classifiers to analyse)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    if queries.ndim != 2 or len(queries) != len(positions):
        raise ValueError(f"queries {queries.shape} and positions {positions.shape} do not match")
    if len(queries) > MAX_QUERIES:
        pick = np.random.default_rng(seed).choice(len(queries), MAX_QUERIES, replace=False)
        queries, positions = queries[pick], positions[pick]
    if len(np.unique(positions)) < 3:
        return None
    fitted = OneVsRestClassifier(LogisticRegression(max_iter=1000)).fit(queries, positions)
    coefficients = np.stack([estimator.coef_[0] for estimator in fitted.estimators_])  # [C, d]
    centred = coefficients - coefficients.mean(0)
    _, singular, axes = np.linalg.svd(centred, full_matrices=False)
    variance = singular**2
    return Components(explained=variance / variance.sum(), axes=axes)


def ranks(values: np.ndarray) -> np.ndarray:
    """[B, N] -> the rank of each entry within its row (0 = smallest): the position a
    sort of the row puts it in."""
    return values.argsort(1).argsort(1)


def layout_agreement(points: np.ndarray, positions: np.ndarray, axis: np.ndarray) -> float:
    """Mean |Spearman| over instances between the position of each point (positions
    [B, N]: position of input i) and its projection on `axis` (points [B, N, d])."""
    projected = points @ axis  # [B, N]
    rank_projection = ranks(projected).astype(np.float64)
    rank_position = ranks(positions).astype(np.float64)
    a = rank_projection - rank_projection.mean(1, keepdims=True)
    b = rank_position - rank_position.mean(1, keepdims=True)
    denominator = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    rho = np.divide((a * b).sum(1), denominator, out=np.zeros(len(a)), where=denominator > 0)
    return float(np.abs(rho).mean())
