"""A regular (non-editable) install carries templates and targets and works from any folder."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


# The data folders and the package each is installed as (pyproject.toml's package-dir).
DATA = {"templates": "_templates", "runtime_c": "_runtime_c", "targets": "_targets"}


def data_files() -> set[str]:
    """Every file the package needs from the data folders, as its path inside the installed package."""
    return {f"{DATA[folder]}/{path.relative_to(REPO / folder).as_posix()}"
            for folder in DATA for path in (REPO / folder).rglob("*")
            if path.is_file() and path.suffix in (".j2", ".c", ".h", ".toml")}


def package_of(folder: Path) -> str:
    """The installed package name of a data folder, e.g. templates/conv2d -> codegen._templates.conv2d."""
    top, *rest = folder.relative_to(REPO).parts
    return ".".join(["codegen", DATA[top], *rest])


def test_every_template_folder_is_a_declared_package():
    """A folder missing from `packages` is installed with a warning per file ("Package would be ignored")."""
    packages = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = [REPO / top for top in DATA] + [p for top in DATA for p in (REPO / top).rglob("*") if p.is_dir()]
    missing = sorted({package_of(f) for f in folders if "__pycache__" not in f.parts} - packages)
    assert not missing, f"add {missing} to [tool.setuptools] packages in pyproject.toml"


def test_non_editable_install_works_from_another_folder(tmp_path, tiny_model_path):
    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-v", "--no-deps", "--disable-pip-version-check",
         "--target", str(site), str(REPO)], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr
    log = install.stdout + install.stderr
    for warning in ("Package would be ignored", "as data is deprecated", "SetuptoolsDeprecationWarning"):
        assert warning not in log, f"the build warns: {warning}"
    installed = {p.relative_to(site / "codegen").as_posix() for p in (site / "codegen").rglob("*") if p.is_file()}
    assert not data_files() - installed, f"not installed: {sorted(data_files() - installed)}"
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
