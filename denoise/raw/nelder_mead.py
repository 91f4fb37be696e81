"""The Nelder-Mead simplex search, in plain Python: the clipped noise fit's minimiser, torch-free and SciPy-free so
that a submission's ``network.py`` can carry it (SciPy's ``minimize(method="Nelder-Mead")`` takes the same steps).
"""

from __future__ import annotations

from collections.abc import Callable


class _Exhausted(Exception):
    """The evaluation budget ran out in the middle of a step."""


def _converged(simplex: list[list[float]], values: list[float], xatol: float, fatol: float) -> bool:
    best = simplex[0]
    spread = max(abs(c - b) for v in simplex[1:] for c, b in zip(v, best, strict=True))
    return spread <= xatol and max(abs(values[0] - v) for v in values[1:]) <= fatol


def _step(
    simplex: list[list[float]], values: list[float], evaluate: Callable[[list[float]], float]
) -> tuple[list[list[float]], list[float]]:
    """One Nelder-Mead step on a simplex sorted by value (changed in place, also returned)."""
    n = len(simplex) - 1
    best, worst = simplex[0], simplex[-1]
    centroid = [sum(v[j] for v in simplex[:-1]) / n for j in range(n)]

    def point(k_centroid: float, k_worst: float) -> list[float]:
        return [k_centroid * ci - k_worst * wi for ci, wi in zip(centroid, worst, strict=True)]

    reflected = point(1 + 1.0, 1.0)
    f_reflected = evaluate(reflected)
    shrink = False
    if f_reflected < values[0]:
        expanded = point(1 + 1.0 * 2.0, 1.0 * 2.0)
        f_expanded = evaluate(expanded)
        simplex[-1], values[-1] = (expanded, f_expanded) if f_expanded < f_reflected else (reflected, f_reflected)
    elif f_reflected < values[-2]:
        simplex[-1], values[-1] = reflected, f_reflected
    elif f_reflected < values[-1]:  # outside contraction
        contracted = point(1 + 0.5 * 1.0, 0.5 * 1.0)
        f_contracted = evaluate(contracted)
        if f_contracted <= f_reflected:
            simplex[-1], values[-1] = contracted, f_contracted
        else:
            shrink = True
    else:  # inside contraction
        contracted = [(1 - 0.5) * ci + 0.5 * wi for ci, wi in zip(centroid, worst, strict=True)]
        f_contracted = evaluate(contracted)
        if f_contracted < values[-1]:
            simplex[-1], values[-1] = contracted, f_contracted
        else:
            shrink = True
    if shrink:  # every vertex halfway towards the best
        for j in range(1, n + 1):
            simplex[j] = [b + 0.5 * (vj - b) for b, vj in zip(best, simplex[j], strict=True)]
            values[j] = evaluate(simplex[j])
    return simplex, values


def nelder_mead(
    f: Callable[[list[float]], float],
    start: list[float],
    xatol: float = 1e-4,
    fatol: float = 1e-6,
    max_iterations: int | None = None,
) -> list[float]:
    """A local minimum of ``f`` near ``start`` by the Nelder-Mead simplex method (Nelder and Mead, 1965), with the
    coefficients, first simplex, acceptance rules, stopping test and limits of SciPy's ``minimize(method=
    "Nelder-Mead")`` (non-adaptive), computed in the same order so that it takes the same steps.

    The first simplex is ``start`` and, for each coordinate, ``start`` with that coordinate 5% larger (0.00025 when
    it is 0). Each step reflects the worst vertex through the centroid of the others (coefficient 1), expands (2),
    contracts outside or inside (1/2) or shrinks every vertex halfway towards the best. It stops once every vertex
    is within ``xatol`` of the best in each coordinate and within ``fatol`` of it in value, or after
    ``max_iterations`` (default 200 per coordinate) or as many evaluations of ``f``.
    """
    n = len(start)
    limit = 200 * n if max_iterations is None else max_iterations
    calls = 0

    def evaluate(x: list[float]) -> float:
        nonlocal calls
        if calls >= limit:
            raise _Exhausted
        calls += 1
        return f(x)

    def ordered(simplex: list[list[float]], values: list[float]) -> tuple[list[list[float]], list[float]]:
        order = sorted(range(n + 1), key=values.__getitem__)  # stable, as NumPy's sort of so few values
        return [simplex[k] for k in order], [values[k] for k in order]

    simplex = [list(start)]
    for i in range(n):
        vertex = list(start)
        vertex[i] = (1 + 0.05) * vertex[i] if vertex[i] != 0 else 0.00025
        simplex.append(vertex)
    simplex, values = ordered(simplex, [evaluate(v) for v in simplex])
    iterations = 1
    while calls < limit and iterations < limit:
        try:
            if _converged(simplex, values, xatol, fatol):
                break
            simplex, values = _step(simplex, values, evaluate)
            iterations += 1
        except _Exhausted:  # out of evaluations mid-step: what the step had done stays, as in SciPy
            pass
        simplex, values = ordered(simplex, values)
    return simplex[0]
