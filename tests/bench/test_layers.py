"""bench/layers.py --model: each step of a tuned model measured beside the tuning record's prediction."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_steps_measured_against_predicted_on_tiny_cnn(tiny_model_path, tmp_path):
    out = tmp_path / "steps.md"
    command = [sys.executable, str(REPO / "bench" / "layers.py"), "--model", str(tiny_model_path), "--runs", "3",
               "--steps", "5", "--cache", str(tmp_path / "cache"), "--out", str(out)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    text = out.read_text()
    assert text == done.stdout.strip() + "\n"
    total = re.search(r"Sum of the steps' medians ([\d.]+) ms; predicted ([\d.]+) ms \(predicted/measured ([\d.]+)\)",
                      text)
    assert total, text
    measured, predicted = float(total[1]), float(total[2])
    assert measured > 0 and predicted > 0
    routines = [line for line in text.split("steps whose")[0].splitlines() if line.startswith("| f32-")]
    assert routines and sum(float(line.split("|")[3]) for line in routines) == pytest.approx(
        measured, abs=0.0005 * (len(routines) + 1))  # each printed to three decimals
    listed = [line for line in text.split("steps whose")[1].splitlines() if re.match(r"\| \d+ \|", line)]
    assert len(listed) == 5
    gaps = [abs(float(line.split("|")[-2])) for line in listed]
    assert gaps == sorted(gaps, reverse=True)  # the steps that differ most come first
