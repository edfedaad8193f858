"""The `neurogen` command line."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .errors import NeurogenError
from .escape import terminal
from .progress import Progress

if TYPE_CHECKING:  # numpy is imported where it is used: `neurogen --help` must start fast
    import numpy as np

MODEL_HELP = "the model: .onnx, a SavedModel folder, .keras, .h5, .pb or .tflite"


class UsageError(NeurogenError):
    pass


def _parse_shapes(items: Sequence[str] | None) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for item in items or ():
        name, sep, dims = item.rpartition("=")
        try:
            if not sep or not name:
                raise ValueError
            shapes[name] = tuple(int(d) for d in dims.split(","))
            if any(d <= 0 for d in shapes[name]):
                raise ValueError
        except ValueError:
            raise UsageError(f"--input-shape '{item}': expected NAME=D0,D1,... with positive sizes") from None
    return shapes


def _named(item: str, names: Sequence[str]) -> tuple[str | None, str]:
    """`NAME=PATH` where NAME is one of `names` (the longest that fits: names may hold '='), else PATH."""
    for name in sorted(names, key=len, reverse=True):
        if item.startswith(f"{name}="):
            return name, item[len(name) + 1:]
    return None, item


def _load_inputs(items: Sequence[str] | None, names: list[str]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """`--input x.npy` (in input order) or `--input NAME=x.npy`: the arrays, and the flag that gave each."""
    import numpy as np

    arrays: dict[str, np.ndarray] = {}
    sources: dict[str, str] = {}
    for i, item in enumerate(items or ()):
        name, path = _named(item, names)
        if name is None:
            if "=" in item and not Path(item).exists():
                given = item.rpartition("=")[0]
                raise UsageError(f"--input {item}: the model has no input '{given}' (inputs: {', '.join(names)})")
            if i >= len(names):
                raise UsageError(f"more --input files than the model has inputs ({len(names)})")
            name = names[i]
        if name in arrays:
            raise UsageError(f"--input {item}: input '{name}' is given twice")
        try:
            value = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise UsageError(f"--input {path}: cannot read a .npy array ({exc})") from None
        if not isinstance(value, np.ndarray):  # a .npz archive
            value.close()
            raise UsageError(f"--input {path}: a .npz archive; give one .npy file per input "
                             "(--input NAME=FILE.npy)")
        arrays[name], sources[name] = value, f"--input {item}"
    return arrays, sources


def _random_inputs(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:
    import numpy as np

    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}


def _output_plan(items: Sequence[str] | None, names: list[str]) -> list[tuple[Path, list[str]]]:
    """Which outputs go to which file, decided before running: exactly the files asked for.

    FILE.npz takes every output, FILE.npy the only one, NAME=FILE.npy one by name. numpy adds its own
    suffix to other names, so they are refused rather than written under a name nobody asked for."""
    plan = []
    for item in items or ():
        name, path = _named(item, names)
        suffix = Path(path).suffix.lower()
        if name is not None:
            if suffix != ".npy":
                raise UsageError(f"--output {item}: one output is written as a .npy file (NAME=FILE.npy)")
            plan.append((Path(path), [name]))
        elif suffix == ".npz" or (suffix == ".npy" and len(names) == 1):
            plan.append((Path(path), list(names)))
        elif suffix == ".npy":
            raise UsageError(f"--output {item}: the model has {len(names)} outputs ({', '.join(names)}) and a "
                             ".npy file holds one array; give FILE.npz for all of them, or "
                             "--output NAME=FILE.npy for each")
        else:
            raise UsageError(f"--output {item}: give a .npy file (one output) or a .npz file (all outputs)")
    return plan


def _save_outputs(plan: list[tuple[Path, list[str]]], outputs: dict[str, np.ndarray]) -> None:
    import numpy as np

    for path, names in plan:
        try:
            with open(path, "wb") as f:  # a file object: numpy appends no suffix to it
                if path.suffix.lower() == ".npz":
                    np.savez(f, **{n: outputs[n] for n in names})
                else:
                    np.save(f, outputs[names[0]])
        except OSError as exc:
            raise UsageError(f"--output {path}: cannot write it ({exc.strerror})") from None
        print(f"wrote {path}" + (f" ({', '.join(names)})" if path.suffix.lower() == ".npz" else ""))


# -- commands ---------------------------------------------------------------------------------

def cmd_compile(args: argparse.Namespace) -> int:
    from .compiler import compile_model

    progress = Progress(enabled=not args.quiet)
    if args.record and args.reference:
        raise UsageError("give either --record or --reference, not both")
    if args.record:
        _read_record(args.record)  # a file that is no record at all fails here, before the import
    how = f"with the path in {args.record}" if args.record else \
        "with the reference routines" if args.reference else "tuning on the target first"
    progress.note(f"compiling {args.model} for target '{args.target}', {how}")
    out = compile_model(args.model, args.output, name=args.name, target=args.target,
                        input_shapes=_parse_shapes(args.input_shape), weights=args.weights,
                        record=args.record, reference=args.reference, reprofile=args.reprofile,
                        threads=args.threads, code_size=args.code_size, force=args.force,
                        progress=progress)
    if args.build:
        from .build import build

        with progress.step("building the shared library"):
            build(out, kind="shared", target=args.target)
    print(f"wrote {out}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from .compiler import tune_model
    from .record import check_writable, write

    check_writable(args.output)  # before minutes of profiling, not after
    progress = Progress(enabled=not args.quiet)
    progress.note(f"tuning {args.model} for target '{args.target}'")
    record = tune_model(args.model, target=args.target, input_shapes=_parse_shapes(args.input_shape),
                        reprofile=args.reprofile, threads=args.threads, code_size=args.code_size,
                        progress=progress)
    out = write(record, args.output)
    predicted = record["predicted_us"]
    print(f"wrote {out}: predicted {predicted['dprs'] / 1e3:.3f} ms per run "
          f"({'optimal' if record['optimal'] else 'best found'}); greedy {predicted['greedy'] / 1e3:.3f} ms")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import numpy as np

    from .runtime import load
    from .targets import load as load_target
    from .verify import check_inputs, check_loads_here, check_runs_here, read_project

    progress = Progress(enabled=not args.quiet)
    project = read_project(args.project)
    target = load_target(args.target)
    check_loads_here(target)
    check_runs_here(project, target)
    names = [p.name for p in project.inputs]
    given, sources = _load_inputs(args.input, names)
    inputs = check_inputs(given, project, sources)
    missing = [p for p in project.inputs if p.name not in inputs]
    if missing and not args.random:
        raise UsageError(f"no value for input(s) {', '.join(p.name for p in missing)}: "
                         "give --input FILE.npy, or --random for random data")
    inputs.update(_random_inputs({p.name: p.shape for p in missing}, args.seed))
    plan = _output_plan(args.output, [p.name for p in project.outputs])
    with progress.step(f"building {args.project}"):
        model = load(args.project, target=args.target)
    outputs = model.run(inputs)
    if args.repeat > 1:
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            model.run(inputs)
            times.append(time.perf_counter() - start)
        print(f"latency: median {1e3 * float(np.median(times)):.3f} ms, min {1e3 * min(times):.3f} ms "
              f"over {args.repeat} runs")
    for name, value in outputs.items():
        flat = value.reshape(-1)
        print(f"{terminal(name)}: shape {list(value.shape)}, argmax {int(flat.argmax())}, "
              f"first {np.array2string(flat[:5], precision=5)}")
    _save_outputs(plan, outputs)
    return 0


def compare(reference: np.ndarray, actual: np.ndarray) -> tuple[float, float]:
    """Max absolute error and max error relative to the reference's largest magnitude."""
    import numpy as np

    diff = float(np.max(np.abs(reference.astype(np.float64) - actual.astype(np.float64)), initial=0.0))
    scale = float(np.max(np.abs(reference), initial=0.0))
    return diff, diff / scale if scale > 0 else diff


def cmd_verify(args: argparse.Namespace) -> int:
    from .runtime import load
    from .targets import load as load_target
    from .verify import check_belongs, check_inputs, check_runs_here, read_project, reference

    progress = Progress(enabled=not args.quiet)
    project = read_project(args.project)
    check_runs_here(project, load_target("host"))
    with progress.step(f"checking that {args.project} was compiled from {args.model}"):
        check_belongs(args.model, project)
    given, sources = _load_inputs(args.input, [p.name for p in project.inputs])
    inputs = _random_inputs({p.name: p.shape for p in project.inputs}, args.seed)
    inputs.update(check_inputs(given, project, sources))
    with progress.step(f"loading {args.model}"):
        ref = reference(args.model, project)
    with progress.step(f"running {ref.engine}"):
        expected = ref.run(inputs)
    with progress.step(f"building {args.project}"):
        model = load(args.project, target="host")
    with progress.step("running the generated code"):
        actual = model.run(inputs)
    worst = 0.0
    print(f"{'output':<24} {'shape':<18} {'max abs err':>12} {'max rel err':>12}")
    for name, value in actual.items():
        theirs = expected[name]
        if theirs.size != value.size:
            raise UsageError(f"output '{name}': {ref.engine} gives shape {list(theirs.shape)}, the project "
                             f"{list(value.shape)}; the project was not compiled from {args.model}")
        abs_err, rel_err = compare(theirs.reshape(value.shape), value)
        worst = max(worst, rel_err)
        print(f"{terminal(name):<24} {str(list(value.shape)):<18} {abs_err:>12.3e} {rel_err:>12.3e}")
    ok = worst <= args.rtol
    print(f"{'PASS' if ok else 'FAIL'}: max relative error {worst:.3e} against {ref.engine} "
          f"(tolerance {args.rtol:g})")
    if args.repeat > 0:
        single = ref.single_thread() if ref.single_thread else ref.run
        threads = "1 thread" if ref.single_thread else f"1 thread ({ref.engine} on its default threads)"
        ours = _median_ms(lambda: model.run(inputs), args.repeat)
        theirs_ms = _median_ms(lambda: single(inputs), args.repeat)
        print(f"latency, median of {args.repeat} runs on {threads}: neurogen {ours:.3f} ms, "
              f"{ref.engine} {theirs_ms:.3f} ms (neurogen speed / {ref.engine} speed = {theirs_ms / ours:.2f})")
    return 0 if ok else 1


def _median_ms(fn: Callable[[], object], repeat: int) -> float:
    import numpy as np

    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def cmd_inspect(args: argparse.Namespace) -> int:
    if args.record:
        return _inspect_record(args)
    if not args.model:
        raise UsageError("inspect needs a model file, or --record TUNING.json")
    from .compiler import import_model
    from .ir import format_shape

    graph = import_model(args.model, input_shapes=_parse_shapes(args.input_shape), simplify=not args.raw)
    macs = graph.macs()
    rows = []
    for i, layer in enumerate(graph.layers):
        ins = [n for n in layer.present_inputs() if not graph.is_constant(n)]
        params = sum(graph.tensor(n).size for n in layer.present_inputs() if graph.is_constant(n))
        act = "" if layer.activation.is_identity else f"+{layer.activation.describe()}"
        rows.append((str(i), layer.name[:40], layer.kind + act, " ".join(format_shape(graph.shape(n)) for n in ins),
                     " ".join(format_shape(graph.shape(n)) for n in layer.outputs), f"{params:,}",
                     f"{macs[layer.name]:,}"))
    _table(("#", "layer", "kind", "input", "output", "params", "MACs"), rows, {0, 5, 6})
    total_params = sum(t.size for t in graph.constants())
    print(f"\n{len(graph.layers)} layers, {total_params:,} parameters, "
          f"{sum(macs.values()) / 1e6:,.1f} M MACs")
    return 0


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]], right: set[int]) -> None:
    rows = [tuple(terminal(cell) for cell in row) for row in rows]  # names from the model: no escape codes
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.rjust(w) if c in right else cell.ljust(w)
                        for c, (cell, w) in enumerate(zip(row, widths))).rstrip())


def _inspect_record(args: argparse.Namespace) -> int:
    """Per layer: the chosen instance, its time, the adapts around it, the runner-up; then the totals."""
    record = _read_record(args.record)
    try:
        _print_record(record)
    except (KeyError, TypeError, AttributeError, ValueError, IndexError) as exc:  # a hand-edited record
        raise UsageError(f"{args.record}: an incomplete tuning record ({type(exc).__name__}: {exc}); "
                         "tune again") from None
    return 0


def _read_record(path: str) -> dict:
    """A tuning record file, checked for the shape every reader relies on (a dict with a path of layers)."""
    from .compiler import load_record

    record = load_record(path)
    entries = record.get("path") if isinstance(record, dict) else None
    if not isinstance(entries, list) or not all(
            isinstance(e, dict) and isinstance(e.get("layer"), str) and isinstance(e.get("instance"), str)
            for e in entries):
        raise UsageError(f"{path}: not a neurogen tuning record (expected the JSON that 'neurogen tune' writes)")
    return record


def _print_record(record: dict) -> None:
    rows = []
    for entry in record["path"]:
        up = entry.get("runner_up")
        time_us = entry.get("time_us")
        rows.append((entry["layer"][:32], entry["instance"].split("|")[0][:56],
                     "-" if time_us is None else f"{time_us:.1f}",
                     "-" if not up else f"{up['instance'][:48]} {up['time_us']:.1f}"))
    _table(("layer", "chosen instance", "us", "runner-up (us)"), rows, {2})
    if record.get("adapts"):
        print("\nadapts:")
        for a in record["adapts"]:
            print(f"  {terminal(a['tensor'])}: {a['src']} -> {a['dst']}  {a['time_us']:.1f} us")
    predicted = record.get("predicted_us")
    if predicted:
        print("\npredicted time per run:")
        for label, value in predicted.items():
            print(f"  {label:<10} {value / 1e3:10.3f} ms")
        print(f"DPRS path {'proven optimal' if record.get('optimal') else 'not proven optimal'}; "
              f"profiled {record['profiling']['instances']} instances "
              f"({record['profiling']['measured']} measured) in {record['profiling']['seconds']:.1f} s")


def cmd_targets(args: argparse.Namespace) -> int:
    from .targets import available, load

    for name in available():
        target = load(name)
        print(f"{name:<16} {target.description}")
    return 0


def cmd_routines(args: argparse.Namespace) -> int:
    from .routines import REGISTRY

    for routine in sorted(REGISTRY, key=lambda r: r.name):
        print(f"{routine.name:<40} {routine.template}")
    return 0


def _positive_int(text: str) -> int:
    from .compiler import MAX_THREADS

    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_THREADS:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to {MAX_THREADS}, not '{text}'")
    return value


# -- parser -----------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="neurogen",
        description="Compile trained neural networks into standalone, dependency-free C.",
        epilog="Run 'neurogen COMMAND --help' for the options of a command.")
    p.add_argument("--version", action="version", version=f"neurogen {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def quiet(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("-q", "--quiet", action="store_true", help="no progress output")

    def threads(sp: argparse.ArgumentParser, default: str) -> None:
        sp.add_argument("--threads", type=_positive_int, metavar="N",
                        help=f"threads the model runs on, and is profiled with ({default}); "
                             "1 builds without pthreads")

    def code_size(sp: argparse.ArgumentParser, default: str | None) -> None:
        where = "default: the record's, else fast" if default is None else f"default: {default}"
        sp.add_argument("--code-size", choices=("fast", "small"), default=default,
                        help="trade code size for speed (" + where + "). fast: each layer's routine is "
                             "specialised to its shapes (constants) unless taking them as arguments measures "
                             "faster; small: routines that can take their shapes as run-time arguments do, so "
                             "layers of one kind share one C function (less code, usually a little slower)")

    def shapes(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--input-shape", action="append", metavar="NAME=D0,D1,...",
                        help="fix the shape of an input with dynamic dimensions, in the model's own "
                             "axis order (NHWC for TensorFlow models; repeatable)")

    c = sub.add_parser("compile", help="compile a model into a C project",
                       description="Compile MODEL into a standalone C project in DIR. MODEL is a .onnx file, a "
                                   "TensorFlow SavedModel folder, a .keras, .h5 or frozen .pb file, or a float "
                                   ".tflite file (the format comes from the path).")
    c.add_argument("model", help=MODEL_HELP)
    c.add_argument("-o", "--output", required=True, metavar="DIR", help="the project folder to write")
    c.add_argument("--target", default="host", help="target name or .toml path (default: host)")
    c.add_argument("--name", help="C name prefix of the generated API (default: from the file name)")
    c.add_argument("--weights", choices=("incbin", "c-array"), default="incbin",
                   help="weights as a binary blob pulled in by .incbin (default), or as a C array")
    c.add_argument("--build", action="store_true", help="also build it as a shared library for the host")
    c.add_argument("--record", metavar="TUNING.json",
                   help="use the routine path of this tuning record: no profiling, reproducible output")
    c.add_argument("--reference", action="store_true",
                   help="use the portable reference routines (no tuning)")
    c.add_argument("--reprofile", action="store_true", help="measure again instead of using the profile cache")
    c.add_argument("--force", action="store_true",
                   help="replace an output folder that neurogen wrote before; a folder it did not write is "
                        "never replaced")
    threads(c, "default: the record's, else 1")
    code_size(c, None)
    shapes(c)
    quiet(c)
    c.set_defaults(func=cmd_compile)

    tu = sub.add_parser("tune", help="profile on the target and choose the routine path",
                        description="Measure every candidate routine (and adapt) on the target, cached, and "
                                    "choose the fastest routine path with DPRS; write the tuning record.")
    tu.add_argument("model", help=MODEL_HELP)
    tu.add_argument("-o", "--output", required=True, metavar="TUNING.json", help="the tuning record to write")
    tu.add_argument("--target", default="host", help="target name or .toml path (default: host)")
    tu.add_argument("--reprofile", action="store_true", help="measure again instead of using the profile cache")
    threads(tu, "default: 1")
    code_size(tu, "fast")
    shapes(tu)
    quiet(tu)
    tu.set_defaults(func=cmd_tune)

    r = sub.add_parser("run", help="run a generated project on .npy inputs",
                       description="Build (cached) and run a generated project on numpy arrays.")
    r.add_argument("project", metavar="DIR", help="a folder written by 'neurogen compile'")
    r.add_argument("--input", action="append", metavar="[NAME=]FILE.npy", help="an input array (repeatable)")
    r.add_argument("--random", action="store_true", help="use random normal data for inputs not given")
    r.add_argument("--seed", type=_seed, default=0, help="seed for --random (default 0)")
    r.add_argument("--output", action="append", metavar="[NAME=]FILE",
                   help="save outputs: FILE.npz gets all of them, FILE.npy the only one, NAME=FILE.npy the "
                        "one named (repeatable)")
    r.add_argument("--repeat", type=_count, default=1, metavar="N", help="run N times and report latency")
    r.add_argument("--target", default="host", help=argparse.SUPPRESS)
    quiet(r)
    r.set_defaults(func=cmd_run)

    v = sub.add_parser("verify", help="compare a generated project with the model's own framework",
                       description="Run MODEL in its own framework (onnxruntime, Keras, TensorFlow, TFLite) and "
                                   "DIR's generated code on the same inputs (random normal, or given, in the "
                                   "model's own axis order: NHWC for TensorFlow); print the errors; exit 1 over "
                                   "tolerance. DIR must have been compiled from MODEL for a target this "
                                   "machine can run.")
    v.add_argument("model", help="the model the project was compiled from: " + MODEL_HELP[len("the model: "):])
    v.add_argument("project", metavar="DIR", help="the generated project")
    v.add_argument("--input", action="append", metavar="[NAME=]FILE.npy", help="an input array (repeatable)")
    v.add_argument("--seed", type=_seed, default=0, help="seed of the random inputs (default 0)")
    v.add_argument("--rtol", type=_tolerance, default=1e-4,
                   help="tolerance on max|error| / max|reference| per output (default 1e-4)")
    v.add_argument("--repeat", type=_count, default=0, metavar="N",
                   help="also time both engines over N runs and print the medians")
    quiet(v)
    v.set_defaults(func=cmd_verify)

    i = sub.add_parser("inspect", help="list a model's layers, shapes and MACs",
                       description="Print the layers neurogen compiles MODEL into, with shapes, "
                                   "parameter counts and multiply-accumulates.")
    i.add_argument("model", nargs="?", help=MODEL_HELP)
    i.add_argument("--raw", action="store_true", help="show the graph before simplification")
    i.add_argument("--record", metavar="TUNING.json",
                   help="report a tuning record: chosen routines, times, adapts, runner-ups, predicted totals")
    shapes(i)
    i.set_defaults(func=cmd_inspect)

    t = sub.add_parser("targets", help="list the known targets")
    t.set_defaults(func=cmd_targets)
    rt = sub.add_parser("routines", help="list the routines in the registry")
    rt.set_defaults(func=cmd_routines)
    return p


def _count(text: str, below: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0 or (below is not None and value >= below):
        raise argparse.ArgumentTypeError(f"expected a whole number from 0, not '{text}'")
    return value


def _seed(text: str) -> int:
    return _count(text, below=2**63)  # what numpy's generators take


def _tolerance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number from 0, not '{text}'")
    return value


def _quiet_stdout() -> None:
    """Point stdout at /dev/null: the reader is gone, and Python's flush at exit must not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
        status = args.func(args)
        sys.stdout.flush()  # inside the try: a closed pipe shows here, not at exit
        return status
    except BrokenPipeError:
        # `neurogen routines | head -1`: the reader has all it wants. Exit as a program killed by
        # SIGPIPE does in a shell (128 + 13), without a traceback.
        _quiet_stdout()
        return 141
    except NeurogenError as exc:
        message = "\n".join(terminal(line) for line in str(exc).split("\n"))
        print(f"neurogen: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("neurogen: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
