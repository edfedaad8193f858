"""A regular (non-editable) install carries templates and targets and works from any folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_non_editable_install_works_from_another_folder(tmp_path, tiny_model_path):
    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps",
         "--target", str(site), str(REPO)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    assert (site / "codegen" / "_templates" / "project" / "model.c.j2").is_file()
    assert (site / "codegen" / "_targets" / "host.toml").is_file()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    script = (
        "import codegen, codegen.paths as p\n"
        f"assert str(p.TEMPLATES).startswith({str(site)!r}), p.TEMPLATES\n"
        f"project = codegen.compile_model({str(tiny_model_path)!r}, 'out', reference=True)\n"
        "print(sorted(codegen.load(project).run({'input': __import__('numpy').zeros((1, 3, 32, 32))})))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "['logits', 'probs']"
