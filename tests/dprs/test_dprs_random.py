"""DPRS against brute force on seeded random DAGs: the exact search must match, the bounded one stay valid."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from codegen import dprs

SEEDS = range(240)


def check_valid(problem: dprs.Problem, sol: dprs.Solution) -> None:
    """A solution is one of each layer's choices, and its total and adapts are what evaluate() says."""
    assert list(sol.choice) == problem.layers
    assert all(sol.choice[layer] in problem.choices[layer] for layer in problem.layers)
    total, adapts = dprs.evaluate(problem, sol.choice)
    assert math.isfinite(sol.total)
    assert total == pytest.approx(sol.total, rel=1e-12, abs=1e-9)
    assert adapts == sol.adapts


def brute_force_or_none(problem: dprs.Problem) -> dprs.Solution | None:
    try:
        return dprs.brute_force(problem)
    except ValueError:
        return None


@pytest.mark.parametrize("seed", SEEDS)
def test_solve_matches_brute_force(seed, make_random):
    problem = make_random(seed)
    expected = brute_force_or_none(problem)
    if expected is None:
        with pytest.raises(ValueError, match="no feasible routine path"):
            dprs.solve(problem)
        return
    got = dprs.solve(problem)
    assert got.optimal
    assert got.total == pytest.approx(expected.total, abs=1e-9)
    check_valid(problem, got)
    check_valid(problem, expected)


def test_random_corpus_covers_the_hard_cases(make_random):
    """The seeds above really exercise every structure the DP must get right (and a few infeasible ones)."""
    seen: Counter[str] = Counter()
    for seed in SEEDS:
        p = make_random(seed)
        readers = Counter(t for layer in p.layers for t in set(p.inputs_of[layer]))
        ins = [p.inputs_of[layer] for layer in p.layers]
        seen["fan-out"] += any(n >= 2 for n in readers.values())
        seen["tensor read twice by one layer"] += any(len(set(i)) < len(i) for i in ins)
        seen["multi-input layer"] += any(len(set(i)) >= 2 for i in ins)
        seen["layer with no input"] += any(not i for i in ins)
        seen["multi-output layer"] += any(len(p.outputs_of[layer]) >= 2 for layer in p.layers)
        seen["several graph inputs"] += len(p.source_formats) >= 2
        seen["several graph outputs"] += len(p.sink_formats) >= 2
        seen["graph output read by a layer"] += any(t in readers for t in p.sink_formats)
        seen["graph input that is a graph output"] += any(t in p.source_formats for t in p.sink_formats)
        fmts = {c.out_format for cs in p.choices.values() for c in cs}
        tensors = [*p.source_formats, *(t for layer in p.layers for t in p.outputs_of[layer])]
        seen["impossible adapt"] += any(math.isinf(p.adapt_cost(t, a, b)) for t in tensors for a in fmts for b in fmts
                                        if a != b)
        seen["integer costs (ties)"] += all(c.cost == int(c.cost) for cs in p.choices.values() for c in cs)
        seen["infeasible"] += brute_force_or_none(p) is None
    for what in ("fan-out", "tensor read twice by one layer", "multi-input layer", "multi-output layer",
                 "several graph inputs", "several graph outputs", "graph output read by a layer",
                 "impossible adapt", "integer costs (ties)", "infeasible"):
        assert seen[what] >= 15, (what, seen)
    assert seen["layer with no input"] >= 5 and seen["graph input that is a graph output"] >= 3, seen


@pytest.mark.parametrize("seed", range(0, 240, 3))
def test_bounded_search_stays_valid(seed, make_random):
    problem = make_random(seed)
    expected = brute_force_or_none(problem)
    if expected is None:
        return
    for max_states in (1, 2):
        try:
            got = dprs.solve(problem, max_states=max_states)
        except ValueError as e:  # the few kept states may all lead to impossible adapts: it must say so
            assert "max_states" in str(e)
            continue
        check_valid(problem, got)
        assert got.total >= expected.total - 1e-9
        if got.optimal:
            assert got.total == pytest.approx(expected.total, abs=1e-9)


@pytest.mark.parametrize("seed", range(40))
def test_dominance_pruning_is_exact_on_larger_graphs(seed, make_random, monkeypatch):
    """Beyond brute force sizes: the pruned search equals the plain DP (no pruning, unbounded states)."""
    problem = make_random(1000 + seed, n_layers=(8, 16), limit=None)
    try:
        got = dprs.solve(problem)
    except ValueError:
        got = None
    monkeypatch.setattr(dprs._Search, "dominance", False)
    try:
        plain = dprs.solve(problem, max_states=10**7)
    except ValueError:
        assert got is None
        return
    assert got is not None and got.optimal and plain.optimal
    assert got.total == pytest.approx(plain.total, abs=1e-9)
    check_valid(problem, got)


@pytest.mark.parametrize("seed", range(0, 240, 8))
def test_hash_collisions_fall_back_to_exact_grouping(seed, make_random, monkeypatch):
    """With a hash that sends every frontier to the same word, grouping must still be exact."""
    monkeypatch.setattr(dprs, "_mix", lambda n: np.zeros(n, dtype=np.uint64))
    problem = make_random(seed)
    expected = brute_force_or_none(problem)
    if expected is None:
        return
    got = dprs.solve(problem)
    assert got.total == pytest.approx(expected.total, abs=1e-9)
