"""Algorithm 4 (appendix E): sub-sampling and balancing a multi-label dataset (mini-AudioSet).

Paper, §3.1: "AudioSet is very class-unbalanced, so we remove classes with less than 500
samples and sample such that each class has about 1100 samples"; appendix E gives the
procedure implemented here, step by step:

1. remove labels whose volume in D is below M (``min_count``);
2. shuffle the entries of D;
3. for each entry d: choose its class c that is the smallest in D' so far; V_c = volume of
   c in D, V'_c = volume of c in D'; draw an integer r uniformly in [0, V_c − V'_c];
   select d into D' if r < N − V'_c (N = ``target``), else skip it.

Entries left with no label after step 1 cannot be selected. Because an entry counts for all
its classes, classes that co-occur with rarer ones can end above ``target``: that is the
algorithm's nature, not a bug; :func:`class_volumes` reports the final volumes.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["balance_multilabel", "class_volumes"]


def _as_label_matrix(labels: object) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 2:
        raise ValueError(
            f"Parameter `labels` should be a 2-D N × C boolean array. Found shape {arr.shape}."
        )
    if arr.dtype != np.bool_:
        if not np.isin(arr, (0, 1)).all():
            raise ValueError(
                "Parameter `labels` should hold only 0/1 or booleans (multi-hot rows). Found "
                f"other values, e.g. {arr[~np.isin(arr, (0, 1))][:3].tolist()}."
            )
        arr = arr.astype(np.bool_)
    return arr


def balance_multilabel(
    labels: object,
    min_count: int = 500,
    target: int = 1100,
    seed: int = 0,
    volume: Literal["total", "remaining"] = "total",
) -> tuple[np.ndarray, np.ndarray]:
    """Select a class-balanced subset of a multi-label dataset (Algorithm 4, appendix E).

    Args:
        labels: N × C boolean (or 0/1) array; row n is the multi-hot label of entry n.
        min_count: M, classes with fewer positives in ``labels`` are dropped (500 in §3.1).
        target: N in the paper, the target class volume (1100 in §3.1).
        seed: seeds the shuffle and the draws (NumPy ``default_rng``).
        volume: what V_c is. ``"total"`` (default, the algorithm as printed): the volume of
            c in D, fixed. Then an entry is kept with probability
            ``(N − V'_c) / (V_c − V'_c + 1)``, and a class much larger than N ends near
            ``N (1 − 1/e) ≈ 0.63 N`` rather than N. ``"remaining"``: the entries of c in D
            not visited yet (d included), i.e. Knuth's selection sampling, which draws r in
            ``[0, V_c − 1]`` and gives exactly ``min(N, V_c)`` to a class whose entries
            carry no other label. Offered because the printed rule reads like a slip of
            this; the paper's own 418 classes / 243k videos cannot tell them apart.

    Returns:
        ``(rows, kept)``: the selected row indices (sorted, unique) and the kept class
        indices (sorted). Restrict the targets with ``labels[rows][:, kept]``.

    Notes:
        Ties for "the smallest class in D'" go to the lowest class index. The draw
        ``r ∈ [0, V_c − V'_c]`` is ``floor(u · (V_c − V'_c + 1))`` with ``u`` uniform in
        [0, 1), one ``u`` per entry drawn up front (same distribution, faster).
    """
    arr = _as_label_matrix(labels)
    if volume not in ("total", "remaining"):
        raise ValueError(f"Parameter `volume` should be 'total' or 'remaining'. Found {volume!r}.")
    for name, value in (("min_count", min_count), ("target", target)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"Parameter `{name}` should be a positive int. Found {value!r}.")
    totals = arr.sum(axis=0)
    kept = np.flatnonzero(totals >= min_count)  # step 1: drop classes with volume < M
    sub = arr[:, kept]
    v_total = totals[kept].astype(np.int64)  # V_c
    v_sel = np.zeros(len(kept), dtype=np.int64)  # V'_c
    rng = np.random.default_rng(seed)
    order = rng.permutation(arr.shape[0])  # step 2: shuffle D
    draws = rng.random(arr.shape[0])
    rows, cols = np.nonzero(sub)
    starts = np.searchsorted(rows, np.arange(arr.shape[0] + 1))
    selected: list[int] = []
    for step, d in enumerate(order):  # step 3
        classes = cols[starts[d] : starts[d + 1]]
        if classes.size == 0:  # no kept label: not selectable
            continue
        c = classes[np.argmin(v_sel[classes])]  # the class of d smallest in D'
        if volume == "total":
            r = int(draws[step] * (v_total[c] - v_sel[c] + 1))  # r ∈ [0, V_c − V'_c]
        else:
            r = int(draws[step] * v_total[c])  # r ∈ [0, remaining − 1]
            v_total[classes] -= 1  # d is visited: it leaves the remaining volume
        if r < target - v_sel[c]:
            selected.append(int(d))
            v_sel[classes] += 1
    return np.sort(np.asarray(selected, dtype=np.int64)), kept


def class_volumes(labels: object, rows: object, classes: object | None = None) -> np.ndarray:
    """Positives per class among ``rows`` (restricted to ``classes`` if given)."""
    arr = _as_label_matrix(labels)
    sub = arr[np.asarray(rows, dtype=np.int64)]
    if classes is not None:
        sub = sub[:, np.asarray(classes, dtype=np.int64)]
    return sub.sum(axis=0)
