"""DPRS: Dynamic Programming for Routine Selection (SoftNeuro, arXiv 2110.06037).

Picks one routine (a `Choice`) per layer so that routine times plus adapt (format conversion) times are least.
Self-contained on purpose: formats are opaque hashable values and nothing here knows about the IR, so the
search can be tested against brute force on small random graphs.

Cost of an assignment: every chosen cost, plus, for each tensor t produced in format p, adapt_cost(t, p, f) once
per distinct format f != p that some consumer slot (or the graph output) wants; adapted copies are shared.

Exact method: DP over a topological order of the layers (one that keeps few tensors live). A state is the
"frontier": for each live tensor, its produced format and the set of formats already adapted to (so a shared copy
is paid once), forgetting copies no later reader could want. What keeps it fast while staying exact: serial
chains are folded into single steps (the classic chain DP), states equal on the frontier are merged keeping the
cheapest, and states that another state beats whatever comes next are dropped (dominance). Only if more than
`max_states` states remain after that are the cheapest kept, and the answer is marked `optimal=False`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass

import networkx as nx
import numpy as np

__all__ = ["Adapt", "Choice", "Problem", "Solution", "brute_force", "evaluate", "fixed_format", "greedy", "solve"]


@dataclass(frozen=True)
class Choice:
    key: str  # identifies a routine instance for this layer
    in_formats: tuple[Hashable, ...]  # wanted format per input slot (same order as Problem.inputs_of[layer])
    out_format: Hashable  # format of every output it writes
    cost: float  # measured time (any unit), >= 0


@dataclass
class Problem:
    layers: list[str]
    inputs_of: dict[str, list[str]]  # activation tensors a layer reads (may be empty; a tensor may appear twice)
    outputs_of: dict[str, list[str]]  # tensors a layer writes (>= 1)
    choices: dict[str, list[Choice]]  # >= 1 per layer
    source_formats: dict[str, Hashable]  # graph-input tensors and their fixed format
    sink_formats: dict[str, Hashable]  # graph-output tensors and the format they must end in
    adapt_cost: Callable[[str, Hashable, Hashable], float]  # math.inf if impossible; never called with a == b


@dataclass
class Adapt:
    tensor: str
    src: Hashable
    dst: Hashable
    cost: float


@dataclass
class Solution:
    choice: dict[str, Choice]  # chosen per layer, in Problem.layers order
    adapts: list[Adapt]  # conversions inserted, in tensor-production order then first-wanted order
    total: float  # sum of chosen costs + adapt costs
    optimal: bool  # proven optimal (exact search, or exhaustive)
    states_explored: int  # solve: distinct frontier states reached, summed over steps; brute_force: assignments


# ---------------------------------------------------------------------------------------------------------------
# Plain evaluation and the baselines


def _producers(problem: Problem) -> dict[str, str | None]:
    """Tensor -> producing layer (None for graph inputs), after checking the problem is well formed."""
    producer: dict[str, str | None] = dict.fromkeys(problem.source_formats)
    for layer in problem.layers:
        if not problem.choices.get(layer):
            raise ValueError(f"layer {layer!r} has no choices")
        if not problem.outputs_of.get(layer):
            raise ValueError(f"layer {layer!r} writes no tensor")
        for t in problem.outputs_of[layer]:
            if t in producer:
                raise ValueError(f"tensor {t!r} is produced twice (by {layer!r} and {producer[t]!r})")
            producer[t] = layer
    for layer in problem.layers:
        n_in = len(problem.inputs_of.get(layer, []))
        for t in problem.inputs_of.get(layer, []):
            if t not in producer:
                raise ValueError(f"layer {layer!r} reads {t!r}, which no layer produces and is not a graph input")
        for c in problem.choices[layer]:
            if len(c.in_formats) != n_in:
                raise ValueError(f"choice {c.key!r} of {layer!r} has {len(c.in_formats)} in_formats, want {n_in}")
            if not c.cost >= 0:  # also catches NaN
                raise ValueError(f"choice {c.key!r} of {layer!r} has cost {c.cost!r}; costs must be >= 0")
    for t in problem.sink_formats:
        if t not in producer:
            raise ValueError(f"graph output {t!r} is never produced")
    return producer


def evaluate(problem: Problem, choice: dict[str, Choice]) -> tuple[float, list[Adapt]]:
    """Total cost of an assignment (math.inf if it needs an impossible adapt) and the adapts it inserts."""
    missing = [layer for layer in problem.layers if layer not in choice]
    if missing:
        raise ValueError(f"no choice for layers {missing}")
    made: dict[str, Hashable] = dict(problem.source_formats)  # tensor -> produced format, in production order
    wants: dict[str, dict[Hashable, None]] = {}  # tensor -> distinct wanted formats, first-wanted first
    total = 0.0
    for layer in problem.layers:
        c = choice[layer]
        total += c.cost
        for t, f in zip(problem.inputs_of.get(layer, []), c.in_formats, strict=True):
            wants.setdefault(t, {})[f] = None
        for t in problem.outputs_of[layer]:
            made[t] = c.out_format
    for t, f in problem.sink_formats.items():
        wants.setdefault(t, {})[f] = None
    adapts = []
    for t, p in made.items():
        for f in wants.get(t, {}):
            if f != p:
                adapts.append(Adapt(t, p, f, problem.adapt_cost(t, p, f)))
                total += adapts[-1].cost
    return total, adapts


def _solution(problem: Problem, choice: dict[str, Choice], optimal: bool, explored: int) -> Solution:
    ordered = {layer: choice[layer] for layer in problem.layers}
    total, adapts = evaluate(problem, ordered)
    return Solution(ordered, adapts, total, optimal, explored)


def brute_force(problem: Problem) -> Solution:
    """Exhaustive search (small problems only): least total, ties to the lexicographically least keys."""
    _producers(problem)
    best: tuple[float, tuple[str, ...]] | None = None
    best_choice: dict[str, Choice] = {}
    count = 0
    for combo in itertools.product(*(problem.choices[layer] for layer in problem.layers)):
        count += 1
        choice = dict(zip(problem.layers, combo))
        rank = (evaluate(problem, choice)[0], tuple(c.key for c in combo))
        if rank[0] < math.inf and (best is None or rank < best):
            best, best_choice = rank, choice
    if best is None:
        raise ValueError("no feasible routine path: every assignment needs an impossible adapt")
    return _solution(problem, best_choice, True, count)


def greedy(problem: Problem) -> Solution:
    """Fastest routine per layer, adapts counted afterwards (a baseline; total may be math.inf)."""
    _producers(problem)
    choice = {layer: min(problem.choices[layer], key=lambda c: (c.cost, c.key)) for layer in problem.layers}
    return _solution(problem, choice, False, 0)


def fixed_format(problem: Problem, fmt: Hashable) -> Solution | None:
    """Cheapest path keeping every layer in `fmt` (adapts only at graph inputs/outputs; total may be math.inf).

    None when some layer has no routine whose inputs and output are all `fmt`.
    """
    _producers(problem)
    choice = {}
    for layer in problem.layers:
        fits = [c for c in problem.choices[layer] if c.out_format == fmt and all(f == fmt for f in c.in_formats)]
        if not fits:
            return None
        choice[layer] = min(fits, key=lambda c: (c.cost, c.key))
    return _solution(problem, choice, False, 0)


# ---------------------------------------------------------------------------------------------------------------
# The search

_COVERED = (-1, 0)  # frontier entry of a tensor that already exists in every format a later reader could want


@dataclass(frozen=True)
class _Option:
    """One way to run a unit: a choice per layer of the unit; formats are bit indices."""

    in_formats: tuple[int, ...]
    out: int
    cost: float  # choice costs plus the adapts between the unit's own layers
    picks: tuple[Choice, ...]

    def rank(self) -> tuple[float, tuple[str, ...]]:
        return self.cost, tuple(c.key for c in self.picks)


@dataclass
class _Unit:
    """A serial chain of layers taken as one DP step: its inner tensors never reach the frontier."""

    layers: list[str]
    inputs: list[str]  # what the first layer reads
    outputs: list[str]  # what the last layer writes
    options: list[_Option]


def _bits(indices: Iterable[int]) -> int:
    mask = 0
    for i in indices:
        mask |= 1 << i
    return mask


class _Search:
    """The problem indexed for the DP: formats as bit indices, layers grouped into units in search order."""

    dominance = True  # exact pruning of states beaten whatever comes next (tests turn it off to check it)

    def __init__(self, problem: Problem):
        self.problem = problem
        self.producer = _producers(problem)
        # Formats numbered by first appearance, so that nothing depends on hashing order.
        fmt: dict[Hashable, int] = {}
        for f in itertools.chain(problem.source_formats.values(), problem.sink_formats.values()):
            fmt.setdefault(f, len(fmt))
        for layer in problem.layers:
            for c in problem.choices[layer]:
                for f in (*c.in_formats, c.out_format):
                    fmt.setdefault(f, len(fmt))
        self.fmt, self.fmts = fmt, list(fmt)
        self.sink = {t: fmt[f] for t, f in problem.sink_formats.items()}
        self._adapt: dict[tuple[str, int, int], float] = {}
        self.readers: dict[str, list[tuple[str, int]]] = {t: [] for t in self.producer}  # (layer, slot)
        for layer in problem.layers:
            for slot, t in enumerate(problem.inputs_of.get(layer, [])):
                self.readers[t].append((layer, slot))
        self.units = self._order(self._chains(self._prune_choices()))
        # Per tensor, the formats its readers may still want: `wanted` before any ran, `after[i]` once unit i
        # ran (0 when unit i was its last reader: the tensor leaves the frontier there).
        reads: dict[str, dict[int, int]] = {t: {} for t in self.producer}
        for i, unit in enumerate(self.units):
            for slot, t in enumerate(unit.inputs):
                reads[t][i] = reads[t].get(i, 0) | _bits(o.in_formats[slot] for o in unit.options)
        self.wanted: dict[str, int] = {}
        self.after: dict[str, dict[int, int]] = {}
        for t, by_unit in reads.items():
            acc, after = 0, {}
            for i in sorted(by_unit, reverse=True):
                after[i] = acc
                acc |= by_unit[i]
            self.wanted[t], self.after[t] = acc, after
        # Frontier entries (produced format, mask of adapted formats), interned per tensor as small ints.
        self.entries: dict[str, list[tuple[int, int]]] = {t: [] for t in self.producer}
        self.entry_id: dict[str, dict[tuple[int, int], int]] = {t: {} for t in self.producer}
        self.future = dict(self.wanted)  # formats the readers not run yet may want, as the search goes
        self.cheap_work = 1 << 22  # table lookups per step that dominance pruning may always spend
        self._excess_cache: dict[tuple[str, int, int], np.ndarray] = {}

    def adapt(self, t: str, p: int, f: int) -> float:
        key = (t, p, f)
        if key not in self._adapt:
            a, b = self.fmts[p], self.fmts[f]
            cost = float(self.problem.adapt_cost(t, a, b))
            if not cost >= 0:
                raise ValueError(f"adapt_cost({t!r}, {a!r}, {b!r}) = {cost!r}; must be >= 0 or inf")
            self._adapt[key] = cost
        return self._adapt[key]

    def _ok(self, t: str, p: Hashable, f: Hashable) -> bool:
        return p == f or self.adapt(t, self.fmt[p], self.fmt[f]) < math.inf

    def _prune_choices(self) -> dict[str, list[Choice]]:
        """Drop choices no optimal path needs; fewer choices mean fewer wanted formats and fewer states.

        A choice goes if another with the same formats is at least as cheap, or if it cannot be joined to any
        remaining choice of a neighbour (or to a graph input/output) without an impossible adapt. Repeated
        until nothing changes; both rules keep every optimal assignment except for ties.
        """
        p = self.problem
        alive: dict[str, list[Choice]] = {}
        for layer in p.layers:
            best: dict[tuple[tuple[Hashable, ...], Hashable], Choice] = {}
            for c in p.choices[layer]:
                sig = (c.in_formats, c.out_format)
                if sig not in best or (c.cost, c.key) < (best[sig].cost, best[sig].key):
                    best[sig] = c
            kept = set(map(id, best.values()))
            alive[layer] = [c for c in p.choices[layer] if id(c) in kept]

        def made_in(t: str) -> set[Hashable]:
            src = self.producer[t]
            return {p.source_formats[t]} if src is None else {c.out_format for c in alive[src]}

        def supported(layer: str, c: Choice) -> bool:
            for t, f in zip(p.inputs_of.get(layer, []), c.in_formats):
                if not any(self._ok(t, q, f) for q in made_in(t)):
                    return False
            for t in p.outputs_of[layer]:
                if t in p.sink_formats and not self._ok(t, c.out_format, p.sink_formats[t]):
                    return False
                for reader, slot in self.readers[t]:
                    if not any(self._ok(t, c.out_format, d.in_formats[slot]) for d in alive[reader]):
                        return False
            return True

        for t, f in p.sink_formats.items():
            if self.producer[t] is None and not self._ok(t, p.source_formats[t], f):
                raise ValueError(f"no feasible routine path: graph input {t!r} cannot be adapted to its output format")
        changed = True
        while changed:
            changed = False
            for layer in p.layers:
                kept_choices = [c for c in alive[layer] if supported(layer, c)]
                if not kept_choices:
                    raise ValueError(f"no feasible routine path: every choice of layer {layer!r} needs an "
                                     "impossible adapt")
                changed |= len(kept_choices) != len(alive[layer])
                alive[layer] = kept_choices
        return alive

    def _chains(self, choices: dict[str, list[Choice]]) -> list[_Unit]:
        """Fold serial chains into units: B joins A when B reads only A's outputs and nothing else reads them.

        Solved exactly on the spot (the best option per (input formats, output format)), so the frontier never
        carries the inner tensors and the DP takes fewer, richer steps.
        """
        p = self.problem
        units = [_Unit([layer], list(p.inputs_of.get(layer, [])), list(p.outputs_of[layer]),
                       [_Option(tuple(self.fmt[f] for f in c.in_formats), self.fmt[c.out_format], c.cost, (c,))
                        for c in choices[layer]]) for layer in p.layers]
        made_by = {t: u for u in units for t in u.outputs}
        gone: set[int] = set()
        for b in units:
            a = made_by.get(b.inputs[0]) if b.inputs else None
            if a is None or a is b or any(made_by.get(t) is not a for t in b.inputs):
                continue
            if any(t in p.sink_formats or any(r != b.layers[0] for r, _ in self.readers[t]) for t in a.outputs):
                continue
            a.options = self._join(a, b)
            a.layers += b.layers
            a.outputs = b.outputs
            made_by.update(dict.fromkeys(b.outputs, a))
            gone.add(id(b))
        return [u for u in units if id(u) not in gone]

    def _join(self, a: _Unit, b: _Unit) -> list[_Option]:
        best: dict[tuple[tuple[int, ...], int], _Option] = {}
        for x in a.options:
            for y in b.options:
                cost = x.cost + y.cost
                for t in a.outputs:  # inner adapts: one per distinct wanted format, as everywhere
                    wants = {f for u, f in zip(b.inputs, y.in_formats) if u == t} - {x.out}
                    cost += sum(self.adapt(t, x.out, f) for f in sorted(wants))
                opt = _Option(x.in_formats, y.out, cost, x.picks + y.picks)
                sig = (opt.in_formats, opt.out)
                if cost < math.inf and (sig not in best or opt.rank() < best[sig].rank()):
                    best[sig] = opt
        if not best:
            raise ValueError(f"no feasible routine path: layers {a.layers + b.layers} cannot be joined without an "
                             "impossible adapt")
        return list(best.values())

    def _order(self, units: list[_Unit]) -> list[_Unit]:
        """A topological order that keeps few tensors live (the state count grows with the live set)."""
        p = self.problem
        pos = {id(u): i for i, u in enumerate(units)}
        by_id = {id(u): u for u in units}
        made_by = {t: u for u in units for t in u.outputs}
        g = nx.DiGraph()
        g.add_nodes_from(pos)
        g.add_edges_from((id(made_by[t]), id(u)) for u in units for t in u.inputs if t in made_by)
        if not nx.is_directed_acyclic_graph(g):
            cycle = [by_id[a].layers[0] for a, _ in nx.find_cycle(g)]
            raise ValueError(f"the layer graph has a cycle through {cycle}")
        n_readers = {t: 0 for t in self.producer}
        for u in units:
            for t in set(u.inputs):
                n_readers[t] += 1

        def delta(u: _Unit, left: dict[str, int]) -> int:  # change in live tensors when u runs next
            return sum(1 for t in u.outputs if n_readers[t]) - sum(1 for t in set(u.inputs) if left[t] == 1)

        def run(u: _Unit, left: dict[str, int]) -> None:
            for t in set(u.inputs):
                left[t] -= 1

        # Greedy: run next the ready unit that frees the most tensors; earlier unit first on ties.
        left, indeg, frees = dict(n_readers), dict(g.in_degree()), []
        ready = [i for i in pos if indeg[i] == 0]
        while ready:
            best = min(ready, key=lambda i: (delta(by_id[i], left), pos[i]))
            ready.remove(best)
            frees.append(by_id[best])
            run(by_id[best], left)
            for nxt in g.successors(best):
                indeg[nxt] -= 1
                if indeg[nxt] == 0:
                    ready.append(nxt)

        def profile(order: list[_Unit]) -> tuple[int, int]:  # (widest, summed) live set
            left = dict(n_readers)
            live = sum(1 for t in p.source_formats if n_readers[t])
            widest = total = live
            for u in order:
                live += delta(u, left)
                run(u, left)
                widest, total = max(widest, live), total + live
            return widest, total

        by_position = [by_id[i] for i in nx.lexicographical_topological_sort(g, key=pos.__getitem__)]
        return min((by_position, frees), key=profile)

    def entry(self, t: str, e: tuple[int, int]) -> int:
        ids = self.entry_id[t]
        if e not in ids:
            ids[e] = len(ids)
            self.entries[t].append(e)
        return ids[e]

    @staticmethod
    def _canon(p: int, mask: int, future: int) -> tuple[int, int]:
        """Forget adapted copies no later reader could want; once all wants are met the produced format is moot."""
        mask &= future
        return _COVERED if future & ~(mask | 1 << p) == 0 else (p, mask)

    def produce(self, t: str, p: int) -> tuple[float, int]:
        """Cost of writing t in format p (its graph-output adapt, paid at once) and its first frontier entry."""
        cost, mask = 0.0, 0
        if t in self.sink and self.sink[t] != p:
            cost, mask = self.adapt(t, p, self.sink[t]), 1 << self.sink[t]
        return cost, self.entry(t, self._canon(p, mask, self.wanted[t]))

    def read(self, t: str, want: int, future: int) -> tuple[np.ndarray, np.ndarray]:
        """Per frontier entry of t: the adapts paid to serve formats `want`, and the entry afterwards."""
        entries = list(self.entries[t])  # entries interned below are new: no state holds them yet
        cost, after = np.zeros(len(entries)), np.zeros(len(entries), dtype=np.int64)
        for i, (p, mask) in enumerate(entries):
            if (p, mask) == _COVERED:
                after[i] = i
                continue
            missing = want & ~(mask | 1 << p)
            cost[i] = sum(self.adapt(t, p, f) for f in range(missing.bit_length()) if missing >> f & 1)
            after[i] = self.entry(t, self._canon(p, (mask | want) & ~(1 << p), future))
        return cost, after

    def step(self, i: int, live: list[str], codes: np.ndarray, costs: np.ndarray,
             max_states: int) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, bool]:
        """Run unit i from every state.

        Returns the new live tensors; codes, cost, parent state and option of each new state; how many distinct
        states were reached; whether the bounded fallback had to drop some that were not proven useless.

        Options that want the same formats of the tensors read lead to the same "base" frontier (reads done,
        dead tensors dropped), so reads are applied once per such signature; the unit's outputs only depend on
        the output format, so each distinct base is then extended once per output format, and no pair of
        resulting states can coincide unless their bases and output entries do.
        """
        unit = self.units[i]
        col = {t: j for j, t in enumerate(live)}
        reads = list(dict.fromkeys(unit.inputs))
        kept = [t for t in live if t not in reads or self.after[t][i]]
        born = [t for t in unit.outputs if self.wanted[t]]
        sigs: dict[tuple[int, ...], int] = {}
        sig_of = [sigs.setdefault(tuple(_bits(f for u, f in zip(unit.inputs, o.in_formats) if u == t) for t in reads),
                                  len(sigs)) for o in unit.options]
        tables = [[self.read(t, want, self.after[t][i]) for t, want in zip(reads, sig)] for sig in sigs]
        outs = list(dict.fromkeys(o.out for o in unit.options))
        births = [[self.produce(t, out) for t in unit.outputs] for out in outs]
        dtype = _dtype(max((len(self.entries[t]) for t in kept + born), default=1))

        # Reads: one base per (state, signature), all read columns at once through concatenated tables.
        n = len(costs)
        where = {t: j for j, t in enumerate(kept)}
        base = np.zeros((len(sigs) * n, _padded(len(kept), dtype)), dtype=dtype)
        base_cost = np.empty(len(sigs) * n)
        held = codes[:, [col[t] for t in reads]].astype(np.intp)
        stays = [j for j, t in enumerate(reads) if t in where]
        for k, table in enumerate(tables):
            offsets = np.cumsum([0] + [len(cost) for cost, _ in table[:-1]])
            at = held + offsets
            rows = base[k * n:(k + 1) * n]
            rows[:, : len(kept)] = codes[:, [col[t] for t in kept]]
            base_cost[k * n:(k + 1) * n] = costs
            if table:
                base_cost[k * n:(k + 1) * n] += np.concatenate([cost for cost, _ in table])[at].sum(axis=1)
                rows[:, [where[reads[j]] for j in stays]] = np.concatenate([after for _, after in table])[at[:, stays]]
        ok = np.flatnonzero(base_cost < math.inf)
        if not len(ok):
            return [], np.zeros((0, 0), dtype), np.zeros(0), ok, ok, 0, False
        if len(ok) < len(base):
            base, base_cost = base[ok], base_cost[ok]
        base_sig = ok // n
        perm, starts = _groups(base)

        # Writes: per distinct base and distinct entries of the born tensors, the cheapest option.
        best: dict[tuple[int, int], int] = {}  # (signature, output format index) -> option
        for k, o in enumerate(unit.options):
            key = (sig_of[k], outs.index(o.out))
            if key not in best or o.rank() < unit.options[best[key]].rank():
                best[key] = k
        pick = np.full((len(sigs), len(outs)), -1)
        price = np.full((len(sigs), len(outs)), math.inf)
        for (k, j), o in best.items():
            pick[k, j], price[k, j] = o, unit.options[o].cost + sum(c for c, _ in births[j])
        variants: dict[tuple[int, ...], list[int]] = {}  # entries of the born tensors -> output formats
        for j, birth in enumerate(births):
            variants.setdefault(tuple(e for t, (_, e) in zip(unit.outputs, birth) if t in born), []).append(j)
        value = np.full((len(starts), len(variants)), math.inf)
        rep = np.zeros(value.shape, dtype=np.int64)
        out = np.zeros(value.shape, dtype=np.int64)
        for v, js in enumerate(variants.values()):
            for j in js:
                low, at = _group_min(base_cost + price[base_sig, j], perm, starts)
                better = low < value[:, v]
                value[better, v], rep[better, v], out[better, v] = low[better], at[better], j
        # Siblings (same base, different entries for the born tensors) differ in the born columns only, so one
        # beats another for every completion when it is cheaper by at least the excess of those columns.
        for v1, e1 in enumerate(variants):
            for v2, e2 in enumerate(variants):
                if v1 != v2 and self.dominance:
                    excess = sum(self._excess(t)[a, b] for t, a, b in zip(born, e1, e2))
                    beaten = value[:, v2] >= value[:, v1] + excess + 1e-12 * np.abs(value[:, v1])
                    value[beaten & ((value[:, v1] < value[:, v2]) | (v1 < v2)), v2] = math.inf
        flat = value.ravel()
        chosen = np.flatnonzero(flat < math.inf)
        g, v = np.divmod(chosen, len(variants))
        r = rep[g, v]
        new = np.zeros((len(chosen), len(kept) + len(born)), dtype=dtype)
        new[:, : len(kept)] = base[r, : len(kept)]
        new[:, len(kept):] = np.array(list(variants), dtype=dtype).reshape(len(variants), len(born))[v]
        for t in reads:
            self.future[t] = self.after[t][i]
        live = kept + born
        # Exact pruning first, then (only if still too many) the bounded fallback.
        sel = self._undominated(live, new, flat[chosen]) if self.dominance else np.arange(len(chosen))
        cut = len(sel) > max_states
        sel = sel[_cheapest(flat[chosen][sel], max_states)]
        return (live, new[sel], flat[chosen][sel], ok[r[sel]] % n, pick[base_sig[r[sel]], out[g[sel], v[sel]]],
                len(chosen), cut)

    def _excess(self, t: str) -> np.ndarray:
        """[e, x]: the most that frontier entry e of t can cost more than entry x in adapts for later readers."""
        key = (t, self.future[t], len(self.entries[t]))
        if key not in self._excess_cache:
            fut = [f for f in range(self.future[t].bit_length()) if self.future[t] >> f & 1]
            price = np.array([[0.0 if (p, mask) == _COVERED or f == p or mask >> f & 1 else self.adapt(t, p, f)
                               for f in fut] for p, mask in self.entries[t]]).reshape(len(self.entries[t]), len(fut))
            mine, theirs = price[:, None, :], price[None, :, :]
            with np.errstate(invalid="ignore"):  # inf - inf where both are impossible: masked out below
                self._excess_cache[key] = np.where(mine > theirs, mine - theirs, 0.0).sum(axis=2)
        return self._excess_cache[key]

    def _undominated(self, live: list[str], codes: np.ndarray, costs: np.ndarray) -> np.ndarray:
        """Indices of the states no kept state beats whatever the rest of the search does (exact pruning).

        State a beats state b for every completion when cost(b) >= cost(a) + excess, the excess being, over
        the live tensors, the most a's entries could cost more than b's in adapts for the formats later
        readers may want (everything else ahead costs both the same). The cheapest few states are tried as a.
        """
        offsets = np.cumsum([0] + [len(self.entries[t]) for t in live[:-1]])
        at = codes.astype(np.intp) + offsets  # row i, column j -> position of codes[i, j] in a joined table
        alive, tried = np.arange(len(costs)), np.zeros(len(costs), dtype=bool)
        recent, work = [len(costs)] * 4, 0  # states removed by each of the last rounds; table lookups done
        # Rounds go on while cheap or while they still remove states (1% over the last four rounds).
        while work < self.cheap_work or sum(recent[-4:]) * 100 >= len(alive):
            fresh = alive[~tried[alive]]
            if len(alive) <= 1 or not len(fresh):
                break
            a = int(fresh[np.argmin(costs[fresh])])
            tried[a] = True
            table = np.concatenate([self._excess(t)[codes[a, j]] for j, t in enumerate(live)] or [np.zeros(0)])
            excess = table[at].sum(axis=1) if live else np.zeros(len(alive))
            beaten = costs[alive] >= costs[a] + excess + 1e-12 * abs(costs[a])
            beaten[alive == a] = False
            alive, at = alive[~beaten], at[~beaten]
            recent.append(int(beaten.sum()))
            work += at.size + len(alive)
        return alive


def _dtype(n_entries: int) -> type[np.unsignedinteger]:
    return np.uint8 if n_entries <= 1 << 8 else np.uint16 if n_entries <= 1 << 16 else np.uint32


def _padded(width: int, dtype: type[np.unsignedinteger]) -> int:
    """Columns rounded up so that a row is a whole number of 64-bit words (read as such by _groups)."""
    per_word = 8 // np.dtype(dtype).itemsize
    return -(-width // per_word) * per_word


def _mix(n: int) -> np.ndarray:
    """Fixed odd 64-bit multipliers (splitmix64 of 1..n) for hashing rows of words."""
    x = np.arange(1, n + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return (x ^ (x >> np.uint64(31))) | np.uint64(1)


def _groups(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group equal rows: (permutation putting each group together, start of each group in it).

    Hashes each row to one word and sorts by it (fast), then checks that every group really holds equal rows;
    on a hash collision it groups exactly with np.unique instead. Group order is arbitrary but deterministic.
    """
    n = len(rows)
    if rows.shape[1] == 0:
        return np.arange(n), np.zeros(1, dtype=np.int64)
    words = rows.view(np.uint64)
    key = (words * _mix(words.shape[1])).sum(axis=1, dtype=np.uint64)
    perm = np.argsort(key)
    starts = np.flatnonzero(np.r_[True, key[perm][1:] != key[perm][:-1]])
    sorted_words = words[perm]
    if np.array_equal(sorted_words, np.repeat(sorted_words[starts], np.diff(np.r_[starts, n]), axis=0)):
        return perm, starts
    _, inverse = np.unique(words, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    perm = np.argsort(inverse, kind="stable")
    return perm, np.flatnonzero(np.r_[True, inverse[perm][1:] != inverse[perm][:-1]])


def _group_min(value: np.ndarray, perm: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per group: the least value and the lowest index holding it (ties go to the earlier candidate)."""
    v = value[perm]
    low = np.minimum.reduceat(v, starts)
    hit = np.where(v == np.repeat(low, np.diff(np.r_[starts, len(v)])), perm, len(v))
    return low, np.minimum.reduceat(hit, starts)


def _cheapest(value: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k least values, ties to the lower index, in increasing index order."""
    if len(value) <= k:
        return np.arange(len(value))
    kth = np.partition(value, k - 1)[k - 1]
    below = np.flatnonzero(value < kth)
    return np.sort(np.r_[below, np.flatnonzero(value == kth)[: k - len(below)]])


def solve(problem: Problem, *, max_states: int = 20000) -> Solution:
    """Least-cost routine path. Exact (optimal=True) unless more than `max_states` frontiers had to be kept."""
    if max_states < 1:
        raise ValueError("max_states must be >= 1")
    s = _Search(problem)
    live = [t for t in problem.source_formats if s.wanted[t]]  # one column per live tensor
    codes = np.zeros((1, len(live)), dtype=np.int64)
    start = 0.0
    for t, f in problem.source_formats.items():
        cost, code = s.produce(t, s.fmt[f])
        start += cost
        if t in live:
            codes[0, live.index(t)] = code
    costs = np.array([start])
    trail: list[tuple[np.ndarray, np.ndarray]] = []  # per unit: parent state and option of each state
    pruned, explored = False, 0
    for i, unit in enumerate(s.units):
        live, codes, costs, parent, option, found, cut = s.step(i, live, codes, costs, max_states)
        if not found:
            hint = f" within max_states={max_states}; raise it" if pruned else ""
            raise ValueError(f"no feasible routine path found{hint} (stuck at layer {unit.layers[0]!r})")
        explored += found
        pruned |= cut
        trail.append((parent, option))
    # Every tensor has left the frontier, so one state is left: follow its back-pointers.
    chosen: dict[str, Choice] = {}
    state = 0
    for unit, (parent, option) in zip(reversed(s.units), reversed(trail)):
        chosen.update(zip(unit.layers, unit.options[int(option[state])].picks))
        state = int(parent[state])
    sol = _solution(problem, chosen, not pruned, explored)
    assert math.isclose(sol.total, float(costs[0]), rel_tol=1e-9, abs_tol=1e-9), (sol.total, costs[0])
    return sol
