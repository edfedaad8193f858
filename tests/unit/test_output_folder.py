"""`compile -o` never deletes or overwrites what neurogen did not write (emit.write_project and the CLI).

The project is written into a temporary sibling and renamed into place; an existing folder is replaced
only when its manifest says neurogen wrote it, and then only neurogen's own files are replaced."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from graphkit import varied_graph

from codegen import compiler, targets
from codegen.emit import MANIFEST, write_project
from codegen.errors import OutputError


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    return compiler.generate(varied_graph(), targets.load("generic-c99"), name="net")


@pytest.fixture(scope="module")
def other_files() -> dict[str, bytes]:
    """A different project (another name: other file names)."""
    return compiler.generate(varied_graph(), targets.load("generic-c99"), name="net2")


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir() if p.name != folder.name)


def test_manifest_lists_every_file_with_its_digest(files, tmp_path):
    out = write_project(files, tmp_path / "p")
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["format"] == "neurogen-manifest"
    assert set(manifest["files"]) == set(files)
    assert snapshot(out) == {**files, MANIFEST: (out / MANIFEST).read_bytes()}


def test_an_empty_folder_is_written(files, tmp_path):
    (tmp_path / "p").mkdir()
    out = write_project(files, tmp_path / "p")
    assert (out / "include" / "net.h").read_bytes() == files["include/net.h"]


@pytest.mark.parametrize("force", [False, True])
def test_a_folder_neurogen_did_not_write_is_refused_untouched(files, tmp_path, force):
    out = tmp_path / "firmware"
    (out / "src").mkdir(parents=True)
    (out / "src" / "main.c").write_text("int main(void) { return 0; }\n")
    (out / "README").write_text("mine\n")
    before = snapshot(out)
    with pytest.raises(OutputError, match="was not written by neurogen"):
        write_project(files, out, force=force)
    assert snapshot(out) == before
    assert siblings(out) == []


def test_a_corrupt_manifest_counts_as_none(files, tmp_path):
    out = tmp_path / "p"
    out.mkdir()
    (out / MANIFEST).write_text("{not json")
    (out / "mine.txt").write_text("mine")
    with pytest.raises(OutputError, match="was not written by neurogen"):
        write_project(files, out, force=True)
    assert (out / "mine.txt").read_text() == "mine"


def test_recompiling_replaces_neurogens_files_and_keeps_the_users(files, other_files, tmp_path):
    out = write_project(files, tmp_path / "p")
    (out / "my_app.c").write_text("user code\n")
    (out / "build" / "obj").mkdir(parents=True)
    (out / "build" / "obj" / "x.o").write_bytes(b"\x7fELF")
    (out / "src" / "notes.txt").write_text("user notes\n")
    write_project(other_files, out)
    now = snapshot(out)
    assert now["my_app.c"] == b"user code\n"
    assert now["build/obj/x.o"] == b"\x7fELF"
    assert now["src/notes.txt"] == b"user notes\n"
    assert "include/net.h" not in now  # the old project's own files are gone
    assert now["include/net2.h"] == other_files["include/net2.h"]
    assert set(json.loads(now[MANIFEST])["files"]) == set(other_files)
    assert siblings(out) == []


def test_an_edited_file_needs_force(files, other_files, tmp_path):
    out = write_project(files, tmp_path / "p")
    (out / "src" / "net.c").write_text("/* my fix */\n")
    before = snapshot(out)
    with pytest.raises(OutputError, match=r"src/net\.c changed since neurogen wrote it; --force"):
        write_project(other_files, out)
    assert snapshot(out) == before
    write_project(other_files, out, force=True)
    assert "src/net.c" not in snapshot(out)
    assert (out / "include" / "net2.h").exists()


def test_a_users_file_where_the_new_project_writes_is_refused_even_with_force(files, other_files, tmp_path):
    out = write_project(files, tmp_path / "p")
    (out / "include" / "net2.h").write_text("the user's own header\n")
    before = snapshot(out)
    with pytest.raises(OutputError, match=r"include/net2\.h would be overwritten but neurogen did not write"):
        write_project(other_files, out, force=True)
    assert snapshot(out) == before


def test_a_symlink_is_never_followed(files, other_files, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep\n")
    out = write_project(files, tmp_path / "p")
    os.symlink(outside, out / "linked")
    write_project(other_files, out)
    assert (out / "linked").is_symlink()
    assert (outside / "precious.txt").read_text() == "keep\n"
    with pytest.raises(OutputError, match="not a folder"):
        write_project(files, out / "linked")


def test_a_failed_write_leaves_the_old_project(files, other_files, tmp_path):
    out = write_project(files, tmp_path / "p")
    (out / "mine.txt").write_text("mine")
    before = snapshot(out)
    bad = {**other_files, "src": b"a file where a folder must be"}  # cannot be written
    with pytest.raises(OutputError, match="cannot write the project"):
        write_project(bad, out)
    assert snapshot(out) == before
    assert siblings(out) == []


# -- through the command line, with the model inside the folders ----------------------------------

def neurogen(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "codegen", *args], capture_output=True, text=True, cwd=cwd)


@pytest.fixture()
def model_tree(tiny_model_path, tmp_path) -> Path:
    """work/models/net.onnx beside a file of the user's; the whole tree is checked after each refusal."""
    models = tmp_path / "work" / "models"
    models.mkdir(parents=True)
    (models / "net.onnx").write_bytes(tiny_model_path.read_bytes())
    (models / "labels.txt").write_text("cat\ndog\n")
    (tmp_path / "work" / "Makefile").write_text("all:\n")
    return tmp_path / "work"


@pytest.mark.parametrize("where, out", [("models", "."), ("work", "models"), ("models", ".."),
                                        ("work", "."), ("models", "net.onnx")])
def test_cli_refuses_folders_holding_the_model(model_tree, where, out):
    before = snapshot(model_tree)
    cwd = model_tree / "models" if where == "models" else model_tree
    model = "net.onnx" if where == "models" else "models/net.onnx"
    proc = neurogen("compile", model, "-o", out, "--reference", cwd=cwd)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "not written by neurogen" in proc.stderr or "not a folder" in proc.stderr, proc.stderr
    assert snapshot(model_tree) == before
    assert not list(model_tree.parent.rglob(".*")), "a temporary folder was left behind"
