"""The Nelder-Mead simplex search, in plain Python: the clipped noise fit's minimiser, torch-free and SciPy-free so
that a submission's ``network.py`` can carry it (SciPy's ``minimize(method="Nelder-Mead")`` takes the same steps).
"""

from __future__ import annotations

from collections.abc import Callable


def nelder_mead(
    f: Callable[[list[float]], float],
    start: list[float],
    xatol: float = 1e-4,
    fatol: float = 1e-6,
    max_iterations: int = 400,
) -> list[float]:
    """A local minimum of ``f`` near ``start`` by the Nelder-Mead simplex method (Nelder and Mead, 1965).

    The first simplex is ``start`` and, for each coordinate, ``start`` with that coordinate 5% larger (0.00025 when
    it is 0); reflection 1, expansion 2, contraction and shrink 1/2. It stops once every vertex is within ``xatol``
    of the best in each coordinate and within ``fatol`` of it in value.
    """
    n = len(start)
    simplex = [list(start)]
    for i in range(n):
        vertex = list(start)
        vertex[i] = vertex[i] * 1.05 if vertex[i] != 0 else 0.00025
        simplex.append(vertex)
    values = [f(v) for v in simplex]
    for _ in range(max_iterations):
        order = sorted(range(n + 1), key=values.__getitem__)
        simplex, values = [simplex[k] for k in order], [values[k] for k in order]
        best, worst = simplex[0], simplex[-1]
        spread = max(abs(c - b) for v in simplex[1:] for c, b in zip(v, best, strict=True))
        if spread <= xatol and max(abs(v - values[0]) for v in values[1:]) <= fatol:
            break
        centroid = [sum(v[j] for v in simplex[:-1]) / n for j in range(n)]

        def along(t: float, w: list[float] = worst, c: list[float] = centroid) -> list[float]:
            return [ci + t * (wi - ci) for ci, wi in zip(c, w, strict=True)]  # t = -1 reflects the worst vertex

        reflected = along(-1.0)
        f_reflected = f(reflected)
        if f_reflected < values[0]:
            expanded = along(-2.0)
            f_expanded = f(expanded)
            simplex[-1], values[-1] = (expanded, f_expanded) if f_expanded < f_reflected else (reflected, f_reflected)
        elif f_reflected < values[-2]:
            simplex[-1], values[-1] = reflected, f_reflected
        else:  # contract, outside when the reflection beat the worst vertex, else inside
            outside = f_reflected < values[-1]
            contracted = along(-0.5 if outside else 0.5)
            f_contracted = f(contracted)
            if f_contracted <= (f_reflected if outside else values[-1]):
                simplex[-1], values[-1] = contracted, f_contracted
            else:  # shrink every vertex halfway towards the best
                simplex = [best] + [[bi + 0.5 * (vi - bi) for bi, vi in zip(best, v, strict=True)] for v in simplex[1:]]
                values = [values[0]] + [f(v) for v in simplex[1:]]
    return simplex[min(range(n + 1), key=values.__getitem__)]
