"""DPRS on hand-made problems with known answers, the baselines, determinism and input checking."""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from dprs_problems import FORMATS

from codegen import dprs
from codegen.dprs import Adapt

HERE = Path(__file__).parent


def keys(sol: dprs.Solution) -> list[str]:
    return [c.key for c in sol.choice.values()]


@pytest.fixture
def chain(builder) -> dprs.Problem:
    """x -> A -> B -> C: A and C are fast in nchw, B in nhwc; adapts cost 2."""
    b = builder({"x": "nchw"})
    b.default_adapt = lambda t, a, c: 2.0
    b.layer("A", ["x"], 1, [(("nchw",), "nchw", 1.0), (("nhwc",), "nhwc", 5.0)])
    b.layer("B", ["A"], 1, [(("nchw",), "nchw", 10.0), (("nhwc",), "nhwc", 1.0)])
    b.layer("C", ["B"], 1, [(("nchw",), "nchw", 1.0), (("nhwc",), "nhwc", 5.0)])
    b.problem.sink_formats["C"] = "nchw"
    return b.problem


def test_chain_mixing_formats_beats_any_single_format(chain):
    sol = dprs.solve(chain)
    assert sol.optimal
    assert keys(sol) == ["A/0", "B/1", "C/0"]
    assert sol.total == pytest.approx(1 + 2 + 1 + 2 + 1)
    assert sol.adapts == [Adapt("A", "nchw", "nhwc", 2.0), Adapt("B", "nhwc", "nchw", 2.0)]
    assert dprs.fixed_format(chain, "nchw").total == pytest.approx(12.0)
    assert dprs.fixed_format(chain, "nhwc").total == pytest.approx(2 + 5 + 1 + 5 + 2)  # adapts at both ends
    assert dprs.fixed_format(chain, "nchw8c") is None
    assert dprs.greedy(chain).total == pytest.approx(7.0)  # here the fastest routines happen to fit
    assert dprs.brute_force(chain).total == pytest.approx(sol.total)


def test_branch_shares_one_adapted_copy(builder):
    """Two readers want x in nhwc: one copy (3) serves both, which beats staying in nchw (7); paying per edge
    (6) would not."""
    b = builder({"x": "nchw"})
    b.default_adapt = lambda t, a, c: 3.0
    for name in ("B1", "B2"):
        b.layer(name, ["x"], 1, [(("nchw",), "nhwc", 3.5), (("nhwc",), "nhwc", 1.0)])
        b.problem.sink_formats[name] = "nhwc"
    p = b.problem
    sol = dprs.solve(p)
    assert keys(sol) == ["B1/1", "B2/1"]
    assert sol.total == pytest.approx(5.0)
    assert sol.adapts == [Adapt("x", "nchw", "nhwc", 3.0)]
    assert dprs.evaluate(p, {"B1": p.choices["B1"][0], "B2": p.choices["B2"][0]})[0] == pytest.approx(7.0)
    assert dprs.evaluate(p, {"B1": p.choices["B1"][1], "B2": p.choices["B2"][0]})[0] == pytest.approx(7.5)


def test_a_layer_reading_a_tensor_twice_pays_each_format_once(builder):
    b = builder({"x": "nchw"})
    b.default_adapt = lambda t, a, c: 2.0
    b.layer("add", ["x", "x"], 1, [(("nhwc", "nhwc"), "nhwc", 1.0), (("nchw", "nhwc"), "nhwc", 1.5)])
    b.problem.sink_formats["add"] = "nhwc"
    p = b.problem
    assert dprs.evaluate(p, {"add": p.choices["add"][0]}) == (3.0, [Adapt("x", "nchw", "nhwc", 2.0)])
    assert dprs.evaluate(p, {"add": p.choices["add"][1]}) == (3.5, [Adapt("x", "nchw", "nhwc", 2.0)])
    assert dprs.solve(p).total == pytest.approx(3.0)


def test_multi_output_layer_with_a_graph_output_that_is_also_read(builder):
    """L writes s0 and s1; M reads both; s0 is also a graph output (nchw). All adapts cost 1."""
    b = builder({"x": "nchw"})
    b.layer("L", ["x"], ["s0", "s1"], [(("nchw",), "nchw", 4.0), (("nchw",), "nhwc", 5.5)])
    b.layer("M", ["s0", "s1"], 1, [(("nhwc", "nhwc"), "nhwc", 1.0), (("nchw", "nchw"), "nchw", 3.0)])
    p = b.problem
    p.sink_formats.update({"s0": "nchw", "M": "nhwc"})
    sol = dprs.solve(p)
    assert keys(sol) == ["L/0", "M/0"]
    assert sol.total == pytest.approx(4 + 1 + 2)
    assert sol.adapts == [Adapt("s0", "nchw", "nhwc", 1.0), Adapt("s1", "nchw", "nhwc", 1.0)]
    # L in nhwc and M in nchw: the nchw copy of s0 serves M and the graph output at once.
    total, adapts = dprs.evaluate(p, {"L": p.choices["L"][1], "M": p.choices["M"][1]})
    assert total == pytest.approx(5.5 + 3 + 3)
    assert [(a.tensor, a.dst) for a in adapts] == [("s0", "nchw"), ("s1", "nchw"), ("M", "nhwc")]
    assert dprs.brute_force(p).total == pytest.approx(sol.total)


def test_greedy_is_worse_than_dprs(builder):
    b = builder({"x": "nchw"})
    b.default_adapt = lambda t, a, c: 2.0
    b.layer("A", ["x"], 1, [(("nchw",), "nchw", 1.5), (("nhwc",), "nhwc", 1.0)])
    b.layer("B", ["A"], 1, [(("nchw",), "nchw", 1.0)])
    b.problem.sink_formats["B"] = "nchw"
    p = b.problem
    g = dprs.greedy(p)
    assert keys(g) == ["A/1", "B/0"] and not g.optimal
    assert g.total == pytest.approx(1 + 1 + 2 + 2)
    assert len(g.adapts) == 2
    sol = dprs.solve(p)
    assert keys(sol) == ["A/0", "B/0"] and sol.total == pytest.approx(2.5) and sol.adapts == []
    assert dprs.fixed_format(p, "nchw").total == pytest.approx(2.5)
    assert dprs.fixed_format(p, "nhwc") is None


def test_greedy_can_be_infeasible_while_dprs_is_not(builder):
    b = builder({"x": "nchw"})
    b.default_adapt = lambda t, a, c: math.inf
    b.layer("A", ["x"], 1, [(("nchw",), "nchw", 2.0), (("nhwc",), "nhwc", 1.0)])
    b.problem.sink_formats["A"] = "nchw"
    assert dprs.greedy(b.problem).total == math.inf
    sol = dprs.solve(b.problem)
    assert keys(sol) == ["A/0"] and sol.total == 2.0 and sol.adapts == []


def test_no_feasible_path_raises(builder):
    b = builder({"x": "nchw"})
    b.default_adapt = lambda t, a, c: math.inf
    b.layer("A", ["x"], 1, [(("nhwc",), "nhwc", 1.0)])
    b.problem.sink_formats["A"] = "nhwc"
    for search in (dprs.solve, dprs.brute_force):
        with pytest.raises(ValueError, match="no feasible routine path"):
            search(b.problem)


def test_graph_input_passed_straight_to_an_output(builder):
    b = builder({"x": "nchw", "y": "nhwc"})
    b.default_adapt = lambda t, a, c: 0.25
    b.layer("A", ["y"], 1, [(("nhwc",), "nhwc", 1.0)])
    b.problem.sink_formats.update({"x": "nhwc", "A": "nhwc"})
    sol = dprs.solve(b.problem)
    assert sol.total == pytest.approx(1.25) and sol.adapts == [Adapt("x", "nchw", "nhwc", 0.25)]


def test_layers_listed_out_of_order_and_an_empty_problem(builder):
    b = builder({"x": "nchw"})
    b.layer("C", ["B"], 1, [(("nchw",), "nchw", 1.0), (("nhwc",), "nchw", 0.5)])
    b.layer("B", ["x"], 1, [(("nchw",), "nhwc", 1.0), (("nchw",), "nchw", 2.0)])
    b.problem.sink_formats["C"] = "nchw"
    assert dprs.solve(b.problem).total == pytest.approx(dprs.brute_force(b.problem).total) == pytest.approx(1.5)
    empty = dprs.solve(builder({"x": "nchw"}).problem)
    assert empty.choice == {} and empty.total == 0.0 and empty.optimal


def wide_problem(builder, seed: int, width: int = 7) -> dprs.Problem:
    """x read by `width` parallel layers (one routine per format) whose outputs one concat reads."""
    rng = random.Random(seed)
    b = builder({"x": "nchw"})
    branches = [b.layer(f"p{i}", ["x"], 1, [((f,), f, rng.uniform(1, 3)) for f in FORMATS])[0] for i in range(width)]
    b.layer("cat", branches, 1, [((f,) * width, f, rng.uniform(1, 3)) for f in FORMATS])
    b.problem.sink_formats["cat"] = "nchw"
    for t in ["x", *branches, "cat"]:
        for a in FORMATS:
            for c in FORMATS:
                if a != c:
                    b.adapt_table[t, a, c] = rng.uniform(0.5, 3)
    return b.problem


@pytest.mark.parametrize("seed", range(5))
def test_tiny_max_states_on_a_wide_graph_is_marked_and_still_valid(builder, seed):
    p = wide_problem(builder, seed)
    exact = dprs.solve(p)
    assert exact.optimal
    assert exact.total == pytest.approx(dprs.brute_force(p).total, abs=1e-9)
    bounded = dprs.solve(p, max_states=2)
    assert not bounded.optimal
    assert bounded.total >= exact.total - 1e-9
    total, adapts = dprs.evaluate(p, bounded.choice)
    assert math.isfinite(total) and total == pytest.approx(bounded.total) and adapts == bounded.adapts
    assert bounded.states_explored < exact.states_explored


def test_solutions_are_deterministic(make_random, make_densenet121):
    for problem_of in (lambda: make_random(5), lambda: make_random(10), lambda: make_densenet121(0)):
        first = dprs.solve(problem_of())
        assert dprs.solve(problem_of()) == first
        assert dprs.solve(problem_of()) == dprs.solve(problem_of())


def test_solutions_do_not_depend_on_string_hashing():
    """Formats are strings here, whose hashes change with PYTHONHASHSEED; the answer must not."""
    script = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from dprs_problems import random_problem, densenet121_problem\n"
        "from codegen import dprs\n"
        "for p in [random_problem(s) for s in (0, 5, 10, 15, 20)] + [densenet121_problem(1)]:\n"
        "    try:\n"
        "        s = dprs.solve(p)\n"
        "    except ValueError:\n"
        "        print('infeasible'); continue\n"
        "    print([c.key for c in s.choice.values()], repr(s.total), s.adapts)\n"
    )
    outputs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        run = subprocess.run([sys.executable, "-c", script, str(HERE)], env=env, capture_output=True, text=True,
                             check=True)
        outputs.append(run.stdout)
    assert outputs[0] == outputs[1] and outputs[0].count("\n") == 6


def test_choices_with_the_same_formats_keep_the_cheapest_and_ties_keep_the_first_key(builder):
    b = builder({"x": "nchw"})
    b.layer("A", ["x"], 1, [(("nchw",), "nchw", 2.0), (("nchw",), "nchw", 1.0), (("nchw",), "nchw", 1.0)])
    b.problem.sink_formats["A"] = "nchw"
    assert keys(dprs.solve(b.problem)) == ["A/1"] == keys(dprs.brute_force(b.problem)) == keys(dprs.greedy(b.problem))


@pytest.mark.parametrize("breakage, message", [
    (lambda p: p.inputs_of["B"].append("nowhere"), "no layer produces"),
    (lambda p: p.outputs_of["B"].append("A"), "produced twice"),
    (lambda p: p.choices.__setitem__("A", []), "no choices"),
    (lambda p: p.choices["A"].append(dprs.Choice("A/x", ("nchw", "nchw"), "nchw", 1.0)), "in_formats"),
    (lambda p: p.choices["A"].append(dprs.Choice("A/x", ("nchw",), "nchw", -1.0)), "cost"),
    (lambda p: p.sink_formats.__setitem__("ghost", "nchw"), "never produced"),
    (lambda p: (p.inputs_of["A"].append("B"), p.choices.__setitem__("A", [  # A reads B too: a format for it
        dprs.Choice(c.key, (*c.in_formats, "nchw"), c.out_format, c.cost) for c in p.choices["A"]])), "cycle"),
])
def test_malformed_problems_are_refused(chain, breakage, message):
    breakage(chain)
    with pytest.raises(ValueError, match=message):
        dprs.solve(chain)


def test_bad_adapt_costs_and_max_states_are_refused(chain):
    with pytest.raises(ValueError, match="max_states"):
        dprs.solve(chain, max_states=0)
    chain.adapt_cost = lambda t, a, b: math.nan
    with pytest.raises(ValueError, match="adapt_cost"):
        dprs.solve(chain)
