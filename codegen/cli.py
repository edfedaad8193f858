"""The `neurogen` command line."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import __version__
from .errors import NeurogenError
from .progress import Progress

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


def _load_inputs(items: Sequence[str] | None, names: list[str]) -> dict[str, np.ndarray]:
    """`--input x.npy` (in input order) or `--input NAME=x.npy`."""
    arrays: dict[str, np.ndarray] = {}
    for i, item in enumerate(items or ()):
        name, sep, path = item.rpartition("=")
        if not sep:
            if i >= len(names):
                raise UsageError(f"more --input files than the model has inputs ({len(names)})")
            name, path = names[i], item
        if name not in names:
            raise UsageError(f"--input {item}: the model has no input '{name}' (inputs: {', '.join(names)})")
        try:
            arrays[name] = np.load(path)
        except (OSError, ValueError) as exc:
            raise UsageError(f"--input {path}: cannot read a .npy array ({exc})") from None
    return arrays


def _random_inputs(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}


# -- commands ---------------------------------------------------------------------------------

def cmd_compile(args: argparse.Namespace) -> int:
    from .compiler import compile_model

    progress = Progress(enabled=not args.quiet)
    if args.record and args.reference:
        raise UsageError("give either --record or --reference, not both")
    how = f"with the path in {args.record}" if args.record else \
        "with the reference routines" if args.reference else "tuning on the target first"
    progress.note(f"compiling {args.model} for target '{args.target}', {how}")
    out = compile_model(args.model, args.output, name=args.name, target=args.target,
                        input_shapes=_parse_shapes(args.input_shape), weights=args.weights,
                        record=args.record, reference=args.reference, reprofile=args.reprofile,
                        threads=args.threads, code_size=args.code_size, progress=progress)
    if args.build:
        from .build import build

        with progress.step("building the shared library"):
            build(out, kind="shared", target=args.target)
    print(f"wrote {out}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from .compiler import tune_model
    from .record import dumps

    progress = Progress(enabled=not args.quiet)
    progress.note(f"tuning {args.model} for target '{args.target}'")
    record = tune_model(args.model, target=args.target, input_shapes=_parse_shapes(args.input_shape),
                        reprofile=args.reprofile, threads=args.threads, code_size=args.code_size,
                        progress=progress)
    out = Path(args.output)
    try:
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(dumps(record))
        tmp.replace(out)
    except OSError as exc:
        raise UsageError(f"{out}: cannot write the tuning record ({exc.strerror})") from None
    predicted = record["predicted_us"]
    print(f"wrote {out}: predicted {predicted['dprs'] / 1e3:.3f} ms per run "
          f"({'optimal' if record['optimal'] else 'best found'}); greedy {predicted['greedy'] / 1e3:.3f} ms")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .runtime import load

    progress = Progress(enabled=not args.quiet)
    with progress.step(f"building {args.project}"):
        model = load(args.project, target=args.target)
    names = [i.name for i in model.inputs]
    inputs = _load_inputs(args.input, names)
    missing = [i for i in model.inputs if i.name not in inputs]
    if missing and not args.random:
        raise UsageError(f"no value for input(s) {', '.join(i.name for i in missing)}: "
                         "give --input FILE.npy, or --random for random data")
    inputs.update(_random_inputs({i.name: i.shape for i in missing}, args.seed))
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
        print(f"{name}: shape {list(value.shape)}, argmax {int(flat.argmax())}, "
              f"first {np.array2string(flat[:5], precision=5)}")
    if args.output:
        out = Path(args.output)
        if out.suffix == ".npz" or len(outputs) > 1:
            np.savez(out.with_suffix(".npz"), **outputs)
            print(f"wrote {out.with_suffix('.npz')}")
        else:
            np.save(out, next(iter(outputs.values())))
            print(f"wrote {out}")
    return 0


def compare(reference: np.ndarray, actual: np.ndarray) -> tuple[float, float]:
    """Max absolute error and max error relative to the reference's largest magnitude."""
    diff = float(np.max(np.abs(reference.astype(np.float64) - actual.astype(np.float64)), initial=0.0))
    scale = float(np.max(np.abs(reference), initial=0.0))
    return diff, diff / scale if scale > 0 else diff


def cmd_verify(args: argparse.Namespace) -> int:
    try:
        import onnxruntime as ort
    except ImportError:
        raise UsageError("verify needs onnxruntime: pip install 'neurogen[test]'") from None
    from .runtime import load

    progress = Progress(enabled=not args.quiet)
    with progress.step(f"building {args.project}"):
        model = load(args.project, target="host")
    shapes = {i.name: i.shape for i in model.inputs}
    inputs = _random_inputs(shapes, args.seed)
    inputs.update(_load_inputs(args.input, list(shapes)))
    with progress.step("running onnxruntime"):
        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(str(args.model), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise UsageError(f"{args.model}: onnxruntime cannot load it ({exc})") from None
        expected = dict(zip([o.name for o in session.get_outputs()], session.run(None, inputs)))
    with progress.step("running the generated code"):
        actual = model.run(inputs)
    worst = 0.0
    print(f"{'output':<24} {'shape':<18} {'max abs err':>12} {'max rel err':>12}")
    for name, value in actual.items():
        if name not in expected:
            raise UsageError(f"output '{name}' of {args.project} is not an output of {args.model}")
        abs_err, rel_err = compare(expected[name], value)
        worst = max(worst, rel_err)
        print(f"{name:<24} {str(list(value.shape)):<18} {abs_err:>12.3e} {rel_err:>12.3e}")
    ok = worst <= args.rtol
    print(f"{'PASS' if ok else 'FAIL'}: max relative error {worst:.3e} (tolerance {args.rtol:g})")
    if args.repeat > 0:
        options.intra_op_num_threads = 1  # the generated code runs on one thread
        single = ort.InferenceSession(str(args.model), options, providers=["CPUExecutionProvider"])
        ours = _median_ms(lambda: model.run(inputs), args.repeat)
        theirs = _median_ms(lambda: single.run(None, inputs), args.repeat)
        print(f"latency, median of {args.repeat} runs on 1 thread: neurogen {ours:.3f} ms, "
              f"onnxruntime {theirs:.3f} ms (neurogen speed / onnxruntime speed = {theirs / ours:.2f})")
    return 0 if ok else 1


def _median_ms(fn, repeat: int) -> float:
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
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.rjust(w) if c in right else cell.ljust(w)
                        for c, (cell, w) in enumerate(zip(row, widths))).rstrip())


def _inspect_record(args: argparse.Namespace) -> int:
    """Per layer: the chosen instance, its time, the adapts around it, the runner-up; then the totals."""
    from .compiler import load_record

    record = load_record(args.record)
    adapts_of: dict[str, list[str]] = {}
    for a in record.get("adapts", []):
        adapts_of.setdefault(a["tensor"], []).append(f"{a['src']}->{a['dst']} {a['time_us']:.1f}us")
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
            print(f"  {a['tensor']}: {a['src']} -> {a['dst']}  {a['time_us']:.1f} us")
    predicted = record.get("predicted_us")
    if predicted:
        print("\npredicted time per run:")
        for label, value in predicted.items():
            print(f"  {label:<10} {value / 1e3:10.3f} ms")
        print(f"DPRS path {'proven optimal' if record.get('optimal') else 'not proven optimal'}; "
              f"profiled {record['profiling']['instances']} instances "
              f"({record['profiling']['measured']} measured) in {record['profiling']['seconds']:.1f} s")
    return 0


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
    r.add_argument("--seed", type=int, default=0, help="seed for --random (default 0)")
    r.add_argument("--output", metavar="FILE", help="save outputs (.npy for one output, else .npz)")
    r.add_argument("--repeat", type=int, default=1, metavar="N", help="run N times and report latency")
    r.add_argument("--target", default="host", help=argparse.SUPPRESS)
    quiet(r)
    r.set_defaults(func=cmd_run)

    v = sub.add_parser("verify", help="compare a generated project with onnxruntime",
                       description="Run MODEL in onnxruntime and DIR's generated code on the same inputs "
                                   "(random normal, or given); print the errors; exit 1 over tolerance.")
    v.add_argument("model", help="the .onnx model the project was compiled from")
    v.add_argument("project", metavar="DIR", help="the generated project")
    v.add_argument("--input", action="append", metavar="[NAME=]FILE.npy", help="an input array (repeatable)")
    v.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    v.add_argument("--rtol", type=float, default=1e-4,
                   help="tolerance on max|error| / max|reference| per output (default 1e-4)")
    v.add_argument("--repeat", type=int, default=0, metavar="N",
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


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except NeurogenError as exc:
        print(f"neurogen: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("neurogen: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
