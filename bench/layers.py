"""Per-layer times of neurogen and onnxruntime on one model, grouped by layer type.

    python bench/layers.py resnet50 --threads 1 [--runs 30] [--cache DIR] [--out FILE.md]
    python bench/layers.py --model FILE [--threads N] [--steps 30]    # any model file neurogen compiles

With --model, the table is neurogen's own: each step's measured median beside the time the tuning record
predicted for it (the profiled cost DPRS summed), grouped by routine and listed for the steps that differ
most, to tell where a predicted total misses the measured one. The onnxruntime side runs for ONNX files.

neurogen: the model tuned for the thread count (the profile cache in --cache is reused),
compiled, and built as a program around bench/layers_main.c, whose step hook records when
each step of the schedule ends: the median over the runs of each step's time. onnxruntime:
its profiler's per-node kernel times (`enable_profiling`), median over the runs. Both sides'
layers are named after the ONNX nodes they come from (fusions keep the name of the node that
absorbed the others), and grouped by type: a convolution by kernel, stride and depthwise-ness,
other layers by operator. The table tells which layer types hold a model back.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))

from codegen import build, compile_model, zoo  # noqa: E402
from codegen.profile.cache import ProfileCache  # noqa: E402
from codegen.progress import Progress  # noqa: E402
from codegen.selection import adapt_layer_name  # noqa: E402


def node_types(model: onnx.ModelProto, by_shape: bool = False) -> dict[str, str]:
    """ONNX node name -> its layer type (convolutions by kernel, stride and grouping; with `by_shape`, also
    by channels and output size)."""
    weights = {t.name: tuple(t.dims) for t in model.graph.initializer}
    inferred = onnx.shape_inference.infer_shapes(model).graph
    dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in [*inferred.value_info, *inferred.input, *inferred.output]}
    types = {}
    for node in model.graph.node:
        name = node.name or f"{node.op_type}_{node.output[0]}"
        kind = node.op_type
        if kind == "Conv":
            kind = conv_type(dims[node.input[0]], list(weights[node.input[1]]), dims[node.output[0]], by_shape)
        types[name] = kind
    return types


@dataclass(frozen=True)
class Step:
    layer: str
    routine: str
    measured_us: float
    predicted_us: float | None  # None: the record holds no time for it (an in-place or untuned step)


def neurogen_run(model_path: Path, work: Path, threads: int, runs: int, cache: Path) -> tuple[list[Step], dict]:
    """Each step of the tuned model's schedule with its median µs over `runs`, and the tuning record."""
    project = compile_model(str(model_path), work / "project", name="layers", threads=threads,
                            cache=ProfileCache(cache / f"profiles-t{threads}.sqlite"), progress=Progress())
    record = json.loads((project / "tuning.json").read_text())
    flags = ("-DNG_MODEL=layers", "-DNG_UPPER=LAYERS", '-DNG_HEADER="layers.h"', f"-DBENCH_RUNS={runs}",
             "-DLAYERS_STEP_HOOK=bench_step_done")
    program = build.build(project, kind="program", main=BENCH_DIR / "layers_main.c", extra_cflags=flags)
    out = subprocess.run([str(program)], check=True, capture_output=True, text=True).stdout
    times = {int(s): float(t) for s, t in (line.split() for line in out.splitlines())}
    predicted = {entry["layer"]: entry["time_us"] for entry in record["path"]}
    predicted.update({adapt_layer_name(a["tensor"], a["src"], a["dst"]): a["time_us"] for a in record["adapts"]})
    steps = [Step(entry["layer"], entry["routine"], times.get(i, 0.0), predicted.get(entry["layer"]))
             for i, entry in enumerate(record["emitted"])]
    return steps, record


def neurogen_steps(model_path: Path, work: Path, threads: int, runs: int, cache: Path) -> list[tuple[str, float]]:
    """(layer name, median µs) per step of the tuned model's schedule."""
    steps, _ = neurogen_run(model_path, work, threads, runs, cache)
    return [(s.layer, s.measured_us) for s in steps]


def steps_table(title: str, steps: list[Step], record: dict, top: int) -> str:
    """Measured against predicted, by routine, and the `top` steps that differ most."""
    by_routine: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0])
    for s in steps:
        row = by_routine[s.routine]
        row[0] += s.measured_us
        row[1] += s.predicted_us or 0.0
        row[2] += 1
    measured = sum(s.measured_us for s in steps)
    predicted = record.get("predicted_us", {}).get("dprs", sum(s.predicted_us or 0.0 for s in steps))
    lines = [f"### {title}", "",
             f"Sum of the steps' medians {measured / 1e3:.3f} ms; predicted {predicted / 1e3:.3f} ms "
             f"(predicted/measured {predicted / measured:.2f}); weights while profiling: "
             f"{record.get('profiling', {}).get('weights', '?')}.", "",
             "| routine | steps | measured ms | predicted ms | predicted/measured |", "|---|---:|---:|---:|---:|"]
    for routine, (m, p, n) in sorted(by_routine.items(), key=lambda kv: -kv[1][0]):
        lines.append(f"| {routine} | {n} | {m / 1e3:.3f} | {p / 1e3:.3f} | {p / m if m else 0:.2f} |")
    lines += ["", f"The {top} steps whose measured time differs most from the predicted:", "",
              "| step | layer | routine | measured µs | predicted µs | difference µs |",
              "|---:|---|---|---:|---:|---:|"]
    order = sorted(range(len(steps)), key=lambda i: -abs(steps[i].measured_us - (steps[i].predicted_us or 0.0)))
    for i in order[:top]:
        s = steps[i]
        p = s.predicted_us or 0.0
        lines.append(f"| {i} | {s.layer[:60]} | {s.routine} | {s.measured_us:.1f} | "
                     f"{'-' if s.predicted_us is None else f'{p:.1f}'} | {s.measured_us - p:+.1f} |")
    return "\n".join(lines) + "\n"


def conv_type(x: list[int], w: list[int], y: list[int], by_shape: bool = False) -> str:
    """A convolution's layer type from its input, weight and output shapes (NCHW); with `by_shape`, with its
    channels and output size."""
    m, cg, kh, kw = w
    stride = max(1, round(x[2] / y[2])) if y[2] else 1
    prefix = "dwconv" if cg == 1 and x[1] > 1 and m % x[1] == 0 else "conv"
    kind = f"{prefix} {kh}x{kw}" + (f" s{stride}" if stride > 1 else "")
    return f"{kind} {x[1]}->{m} out {y[2]}x{y[3]}" if by_shape else kind


def onnxruntime_type(event: dict, by_shape: bool = False) -> str:
    """The layer type of one profiled onnxruntime node: its optimised graph renames and re-lays nodes
    (NCHWc convolutions, reorders), so the type comes from the operator and its shapes."""
    op = event["args"].get("op_name", "?")
    shapes = [next(iter(t.values())) for t in event["args"].get("input_type_shape", [])]
    outputs = [next(iter(t.values())) for t in event["args"].get("output_type_shape", [])]
    if op in ("Conv", "FusedConv") and len(shapes) >= 2 and outputs and len(shapes[1]) == 4:
        # NCHWc convolutions see their input channels padded to the block; the weights hold the real count
        x = [shapes[0][0], shapes[1][1] if shapes[1][1] > 1 else shapes[0][1], *shapes[0][2:]]
        return conv_type(x, shapes[1], outputs[0], by_shape)
    if op in ("ReorderInput", "ReorderOutput"):
        return "layout adapt"
    return op


def onnxruntime_nodes(model_path: Path, work: Path, threads: int, runs: int,
                      by_shape: bool = False) -> dict[str, tuple[str, float]]:
    """Node name -> (layer type, median kernel µs) under onnxruntime's profiler."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.enable_profiling = True
    options.profile_file_prefix = str(work / "ort")
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    feeds = {i.name: np.random.default_rng(0).standard_normal(i.shape).astype(np.float32)
             for i in session.get_inputs()}
    for _ in range(runs + 1):
        session.run(None, feeds)
    events = json.loads(Path(session.end_profiling()).read_text())
    samples: dict[str, list[float]] = defaultdict(list)
    types: dict[str, str] = {}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            name = event["name"][: -len("_kernel_time")]
            samples[name].append(float(event["dur"]))
            types[name] = onnxruntime_type(event, by_shape)
    # the first run is a warm-up
    return {name: (types[name], statistics.median(values[1:] or values)) for name, values in samples.items()}


def layer_type(name: str, types: dict[str, str]) -> str:
    if name.startswith("adapt:"):
        return "layout adapt"
    if name in types:
        return types[name]
    base = name.split("/")[0].split(":")[0]
    return types.get(base, "other")


def table(model: str, threads: int, ng: list[tuple[str, float]], ort_times: dict[str, tuple[str, float]],
          types: dict[str, str]) -> str:
    groups: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0, 0])
    for name, us in ng:
        row = groups[layer_type(name, types)]
        row[0] += us
        row[2] += 1
    for kind, us in ort_times.values():
        row = groups[kind]
        row[1] += us
        row[3] += 1
    total_ng = sum(r[0] for r in groups.values())
    total_ort = sum(r[1] for r in groups.values())
    lines = [f"### {model}, {threads} thread(s): per layer type (sum of per-layer medians)", "",
             "| layer type | neurogen layers | neurogen ms | onnxruntime nodes | onnxruntime ms | neurogen / ort |",
             "|---|---|---|---|---|---|"]
    for kind, (a, b, na, nb) in sorted(groups.items(), key=lambda kv: -max(kv[1][0], kv[1][1])):
        ratio = f"{a / b:.2f}" if b else "-"
        lines.append(f"| {kind} | {na} | {a / 1e3:.3f} | {nb} | {b / 1e3:.3f} | {ratio} |")
    lines.append(f"| **total** | {len(ng)} | {total_ng / 1e3:.3f} | {len(ort_times)} | {total_ort / 1e3:.3f} | "
                 f"{total_ng / total_ort:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", choices=zoo.MODELS, help="a zoo model (or --model FILE)")
    parser.add_argument("--model", dest="model_file", type=Path,
                        help="a model file (.onnx, .keras, .tflite, SavedModel): its steps, measured against "
                             "predicted")
    parser.add_argument("--steps", type=int, default=30, help="with --model: how many steps to list")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=30, help="timed runs per engine (after one untimed run)")
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "neurogen-bench-layers",
                        help="profile cache folder, reused between runs (default: %(default)s)")
    parser.add_argument("--by-shape", action="store_true",
                        help="group convolutions by channels and output size too, not only by kernel and stride")
    parser.add_argument("--out", type=Path, help="also write the table to this markdown file")
    args = parser.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    if (args.model is None) == (args.model_file is None):
        parser.error("give a zoo model or --model FILE")
    if args.model_file is not None:
        with tempfile.TemporaryDirectory(prefix="neurogen-layers-") as tmp:
            steps, record = neurogen_run(args.model_file, Path(tmp), args.threads, args.runs, args.cache)
        text = steps_table(f"{args.model_file.name}, {args.threads} thread(s)", steps, record, args.steps)
        print(text)
        if args.out:
            write_text(args.out, text)
        return 0
    model = zoo.build(args.model, resolution=args.resolution)
    with tempfile.TemporaryDirectory(prefix="neurogen-layers-") as tmp:
        work = Path(tmp)
        path = work / f"{args.model}.onnx"
        onnx.save(model, str(path))
        ng = neurogen_steps(path, work, args.threads, args.runs, args.cache)
        ort_times = onnxruntime_nodes(path, work, args.threads, args.runs, args.by_shape)
    text = table(args.model, args.threads, ng, ort_times, node_types(model, args.by_shape))
    print(text)
    if args.out:
        write_text(args.out, text)
    return 0


def write_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


if __name__ == "__main__":
    sys.exit(main())
