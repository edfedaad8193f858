"""DPRS against its baselines, measured: tune a model, build the DPRS path, the greedy path and each
single-layout path as projects, time them side by side (interleaved rounds), and compare each
path's measured time with the time DPRS predicted from the per-layer profile.

    python bench/paths.py resnet50 mobilenet_v2 [--rounds 7] [--cache DIR]

Tuning is timed twice: from the given cache (empty by default), then from the warm one.
"""

from __future__ import annotations

import argparse
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", choices=zoo.MODELS)
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timing rounds (default 7)")
    parser.add_argument("--runs", type=int, default=3, help="runs per path per round (default 3)")
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
        for _ in range(args.rounds):
            for label, model_ in loaded.items():
                for _ in range(args.runs):
                    t0 = time.perf_counter()
                    model_.run(inputs)
                    samples[label].append(time.perf_counter() - t0)
        print(f"{'path':<10} {'predicted ms':>13} {'measured ms':>12} {'min-max ms':>17} {'meas/pred':>10} "
              f"{'vs dprs':>8}")
        dprs_ms = 1e3 * statistics.median(samples["dprs"])
        for label, solution in paths.all().items():
            measured = 1e3 * statistics.median(samples[label])
            low, high = 1e3 * min(samples[label]), 1e3 * max(samples[label])
            predicted = solution.total / 1e3
            print(f"{label:<10} {predicted:13.2f} {measured:12.2f} {low:8.2f}-{high:<8.2f} "
                  f"{measured / predicted:10.2f} {measured / dprs_ms:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
