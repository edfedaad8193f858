"""DPRS against its baselines, measured: tune a model, build the DPRS path, the greedy path and each
single-layout path as projects, time them side by side (interleaved rounds), and compare each
path's measured time with the time DPRS predicted from the per-layer profile.

    python bench/paths.py resnet50 mobilenet_v2 [--rounds 30] [--burst 5] [--cache DIR]

Each round runs every path, in a fresh random order, as a burst of back-to-back runs after
one untimed run: the steady state of an application that runs the model on a stream of inputs,
which is also what the per-layer profile measures (a layer run repeatedly). A single run after
the CPU idled or after another model ran is slower on this VM (up to +50% for MobileNetV2),
and that is noise about the machine rather than the path.

Tuning is timed twice: from the given cache (empty by default), then from the warm one.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import codegen
from codegen import zoo
from codegen.compiler import generate, import_model
from codegen.emit import write_project
from codegen.profile.cache import ProfileCache
from codegen.progress import Progress
from codegen.targets import load as load_target
from codegen.tune import selections_of, tune_paths


def _path(solution) -> tuple:
    """What a solution builds: each layer's instance and each adapt (equal tuples: the same program)."""
    return (tuple(sorted((k, c.key) for k, c in solution.choice.items())),
            tuple(sorted((a.tensor, a.src, a.dst) for a in solution.adapts)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", choices=zoo.MODELS)
    parser.add_argument("--rounds", type=int, default=30,
                        help="timing rounds; each runs every path once, in a fresh random order (default 30)")
    parser.add_argument("--burst", type=int, default=5,
                        help="timed back-to-back runs of a path within a round, after one untimed run (default 5)")
    parser.add_argument("--cache", help="profile cache folder (default: a fresh one)")
    args = parser.parse_args()
    target = load_target("host")
    work = Path(tempfile.mkdtemp(prefix="neurogen-paths-"))
    cache = ProfileCache(Path(args.cache or work / "cache") / "profiles.sqlite")
    for name in args.models:
        model = zoo.build(name)
        graph = import_model(model)
        inputs = zoo.example_input(model)
        start = time.perf_counter()
        cold = tune_paths(graph, target, cache=cache, progress=Progress())
        first = time.perf_counter() - start
        start = time.perf_counter()
        paths = tune_paths(graph, target, cache=cache)
        warm = time.perf_counter() - start
        print(f"\n{name}: tuning {first:.1f} s ({cold.measured} of {cold.instances} instances measured), "
              f"then {warm:.2f} s from the warm cache; DPRS {'optimal' if paths.best.optimal else 'bounded'}")
        loaded = {}
        for label, solution in paths.all().items():
            files = generate(graph, target, name=f"{name}_{label.replace('-', '_')}",
                             selections=selections_of(solution, graph, target))
            loaded[label] = codegen.load(write_project(files, work / f"{name}-{label}"))
        reference = loaded["dprs"].run(inputs)["logits"]
        samples: dict[str, list[float]] = {label: [] for label in loaded}
        for model_ in loaded.values():  # every path computes the same logits
            assert np.allclose(model_.run(inputs)["logits"], reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())
        order = random.Random(0)
        labels = list(loaded)
        for _ in range(args.rounds):
            order.shuffle(labels)  # no path always runs first, or right after the same neighbour
            for label in labels:
                loaded[label].run(inputs)
                for _ in range(args.burst):
                    t0 = time.perf_counter()
                    loaded[label].run(inputs)
                    samples[label].append(time.perf_counter() - t0)
        print(f"{'path':<10} {'predicted ms':>13} {'median ms':>10} {'p10 ms':>8} {'min-max ms':>17} "
              f"{'median/pred':>12} {'p10/pred':>9} {'vs dprs':>8}  path")
        dprs_ms = 1e3 * statistics.median(samples["dprs"])
        dprs_path = _path(paths.best)
        for label, solution in paths.all().items():
            same = "the DPRS path" if label != "dprs" and _path(solution) == dprs_path else ""
            runs = sorted(samples[label])
            median, p10 = 1e3 * statistics.median(runs), 1e3 * runs[len(runs) // 10]
            predicted = solution.total / 1e3
            spread = f"{1e3 * runs[0]:8.2f}-{1e3 * runs[-1]:<8.2f}"
            print(f"{label:<10} {predicted:13.2f} {median:10.2f} {p10:8.2f} {spread} "
                  f"{median / predicted:12.2f} {p10 / predicted:9.2f} {median / dprs_ms:8.2f}  {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
