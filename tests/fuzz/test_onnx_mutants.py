"""Fuzz: mutated ONNX models never give a traceback, a hang, C that does not build, or an answer that
differs from onnxruntime's.

Each mutant (tests/fuzz/mutate.py) is compiled in-process with the reference routines. A refusal must be
a NeurogenError; a compiled mutant must build with -Werror and, where onnxruntime runs the model, give its
outputs (max|err| / max|ref| <= 1e-4; outputs where onnxruntime has NaN or Inf are not compared). A mutant
that onnxruntime refuses as invalid must not compile.

Script mode, for a larger run: python tests/fuzz/test_onnx_mutants.py --count 1000 --seed 7
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).parent))
import mutate  # noqa: E402

import codegen  # noqa: E402
from codegen.build import build  # noqa: E402
from codegen.errors import NeurogenError  # noqa: E402
from codegen.runtime import CompiledModel  # noqa: E402

TIME_LIMIT_S = 60  # per mutant: compile, build and run; the slowest seed takes a few seconds
TOLERANCE = 1e-4
MAX_ORT_ELEMENTS = 1 << 22  # inputs onnxruntime is asked to run when neurogen refused (huge dims: not run)
FAILURES = ("traceback", "hang", "build_failure", "disagreement", "silent_disagreement", "run_failure")
# onnxruntime's messages for what it does not implement (as opposed to a model it finds invalid)
# (judged per case: "Cannot parse data from external tensors" is its shape inference not reading a valid
# model's external data, e.g. a Reshape's shape kept in a data file).
ORT_UNSUPPORTED = ("NOT_IMPLEMENTED", "Could not find an implementation", "is not supported",
                   "Cannot parse data from external tensors")


class Hang(Exception):
    pass


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    def expire(signum: int, frame: object) -> None:
        raise Hang(f"over {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Tally:
    counts: Counter = field(default_factory=Counter)
    cases: dict[str, list[str]] = field(default_factory=dict)

    def add(self, outcome: str, label: str, detail: str = "") -> None:
        self.counts[outcome] += 1
        self.cases.setdefault(outcome, []).append(f"{label}: {detail}"[:600] if detail else label)

    def failures(self) -> dict[str, list[str]]:
        return {k: v for k, v in self.cases.items() if k in FAILURES}


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 4
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _ort_kind(message: str) -> str:
    return "unsupported" if any(s in message for s in ORT_UNSUPPORTED) else "invalid"


def ort_run(path: Path, feeds: dict[str, np.ndarray] | None) -> tuple[str, dict[str, np.ndarray], str]:
    """onnxruntime's verdict: ("ok", outputs by name, "") or ("invalid" | "unsupported", {}, message).
    With `feeds` None, inputs are made from the shapes the session declares (free sizes as 1)."""
    try:
        session = _session(path)
        if feeds is None:
            feeds = {}
            for info in session.get_inputs():
                shape = [d if isinstance(d, int) and d >= 0 else 1 for d in info.shape]
                if int(np.prod(shape)) > MAX_ORT_ELEMENTS or info.type != "tensor(float)":
                    return "unchecked", {}, f"input {info.name} {info.type} {info.shape}"
                feeds[info.name] = np.ones(shape, np.float32)
        names = [o.name for o in session.get_outputs()]
        return "ok", dict(zip(names, session.run(None, feeds))), ""
    except Exception as exc:  # onnxruntime's own exception types
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return _ort_kind(message), {}, message[:300]


def compare(ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray]) -> str | None:
    """None when every output agrees; "nan" when onnxruntime's has NaN or Inf; else what differs."""
    for name, got in ours.items():
        if name not in theirs:
            return f"output {name!r} missing from onnxruntime's {sorted(theirs)}"
        want = np.asarray(theirs[name])
        if not np.all(np.isfinite(want)):
            return "nan"
        if got.shape != want.shape:
            return f"output {name!r}: shape {got.shape}, onnxruntime {want.shape}"
        scale = max(float(np.max(np.abs(want))) if want.size else 0.0, 1e-30)
        err = float(np.max(np.abs(got.astype(np.float64) - want))) / scale if want.size else 0.0
        if not err <= TOLERANCE:
            return f"output {name!r}: max|err|/max|ref| = {err:.3g}"
    return None


def run_mutant(label: str, data: bytes, extra: dict[str, bytes], work: Path, tally: Tally) -> str:
    """Compile, build, run and compare one mutant; records and returns its outcome."""
    folder = work / "model"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    path = folder / "mutant.onnx"
    path.write_bytes(data)
    for name, content in extra.items():
        (folder / name).write_bytes(content)
    project = work / "project"
    try:
        with time_limit(TIME_LIMIT_S):
            try:
                codegen.compile_model(path, project, name="fuzz", reference=True, force=True)
            except NeurogenError as exc:
                verdict, _, _ = ort_run(path, None)
                outcome = "refused_by_both" if verdict in ("invalid", "unsupported") else f"refused_ort_{verdict}"
                tally.add(outcome, label, str(exc).splitlines()[0])
                return outcome
            try:
                library = build(project, kind="shared", werror=True)
            except NeurogenError as exc:
                tally.add("build_failure", label, str(exc))
                return "build_failure"
            model = CompiledModel(project, library)
            rng = np.random.default_rng(0)
            feeds = {i.name: rng.standard_normal(i.shape).astype(np.float32) for i in model.inputs}
            try:
                ours = model.run(feeds)
            except NeurogenError as exc:
                tally.add("run_failure", label, str(exc))
                return "run_failure"
            finally:
                model.close()
    except Hang as exc:
        tally.add("hang", label, str(exc))
        return "hang"
    except Exception:
        tally.add("traceback", label, traceback.format_exc(limit=-3))
        return "traceback"
    verdict, theirs, message = ort_run(path, feeds)
    if verdict == "invalid":
        tally.add("silent_disagreement", label, f"onnxruntime refuses it: {message}")
        return "silent_disagreement"
    if verdict != "ok":
        tally.add("compiled_ort_unsupported", label, message)
        return "compiled_ort_unsupported"
    difference = compare(ours, theirs)
    outcome = "compiled_and_agree" if difference is None else "nan_skipped" if difference == "nan" \
        else "disagreement"
    tally.add(outcome, label, difference or "")
    return outcome


def fuzz(seed: int, count: int, work: Path, progress: bool = False) -> Tally:
    tally = Tally()
    start = time.monotonic()
    for i, (label, data, extra) in enumerate(mutate.mutants(seed, count)):
        outcome = run_mutant(f"#{i} {label}", data, extra, work, tally)
        if progress and (outcome in FAILURES or (i + 1) % 100 == 0):
            print(f"[{i + 1}/{count} {time.monotonic() - start:.0f}s] {outcome}: {label}", flush=True)
    return tally


def report(tally: Tally) -> str:
    c = tally.counts
    lines = [f"tracebacks: {c['traceback']}", f"hangs: {c['hang']}", f"C build failures: {c['build_failure']}",
             f"disagreements (outputs differ, or run failed): {c['disagreement'] + c['run_failure']}",
             f"silent disagreements (onnxruntime refuses as invalid, neurogen compiles): {c['silent_disagreement']}",
             f"refused by both: {c['refused_by_both']}",
             f"refused by neurogen, run by onnxruntime: {c['refused_ort_ok'] + c['refused_ort_unchecked']}",
             f"compiled and agree: {c['compiled_and_agree']}",
             f"compiled, onnxruntime output has NaN/Inf (not compared): {c['nan_skipped']}",
             f"compiled, onnxruntime refuses as unsupported: {c['compiled_ort_unsupported']}"]
    for outcome in (*FAILURES, "compiled_ort_unsupported", "refused_ort_ok"):
        for case in tally.cases.get(outcome, [])[:20]:
            lines.append(f"  {outcome}: {case}")
    return "\n".join(lines)


# -- the test --------------------------------------------------------------------------------------

SEED = int(os.environ.get("NEUROGEN_FUZZ_SEED", "17"))
COUNT = int(os.environ.get("NEUROGEN_FUZZ_COUNT", "250"))


def test_mutated_models_are_refused_cleanly_or_compiled_right(tmp_path):
    tally = fuzz(SEED, COUNT, tmp_path)
    assert not tally.failures(), report(tally)
    # The harness compares real outputs and sees real refusals: a run with neither tests nothing.
    assert tally.counts["compiled_and_agree"] > 0 and tally.counts["refused_by_both"] > 0, report(tally)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args()
    print(f"seed {args.seed}, {args.count} mutants", flush=True)
    with tempfile.TemporaryDirectory(prefix="neurogen-fuzz-") as work:
        tally = fuzz(args.seed, args.count, Path(work), progress=True)
    print(report(tally))
    return 1 if tally.failures() else 0


if __name__ == "__main__":
    sys.exit(main())
