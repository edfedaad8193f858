"""Smoke test of the side-by-side benchmark (bench/engines.py): every engine runs the small CNN,
its outputs match onnxruntime's, and the table, the numbers and the chart are written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("tensorflow")

REPO = Path(__file__).resolve().parents[2]
ENGINES = ("neurogen", "onnxruntime", "tflite", "tensorflow")


def test_engines_benchmark_on_tiny_cnn(tmp_path):
    out = tmp_path / "results"
    command = [sys.executable, str(REPO / "bench" / "engines.py"), "--models", "tiny_cnn", "--resolution", "32",
               "--threads", "1", "--rounds", "1", "--burst", "2", "--settle", "5", "--quick-tune", "--out", str(out),
               "--work", str(tmp_path / "work")]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    rows = json.loads((out / "engines.json").read_text())["rows"]
    assert sorted(r["engine"] for r in rows) == sorted(ENGINES)
    for row in rows:
        assert row["model"] == "tiny_cnn" and row["threads"] == 1
        assert len(row["times_ms"]) == 2 and all(t > 0 for t in row["times_ms"]), row
        assert row["error"] is not None and row["error"] <= 1e-4, row
        assert row["vs_ort"] > 0 and row["gflops"] > 0, row
    table = (out / "engines.md").read_text()
    assert table == done.stdout
    assert "each burst after 5 ms idle" in table
    for engine in ENGINES:
        assert f"| tiny_cnn | 1 | {engine} |" in table
    assert "| tiny_cnn | 1 | " in table.split("tuning time")[1]  # the tuning table
    png = (out / "engines.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 1000
