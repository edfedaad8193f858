# neurogen: the two commands that do everything on a fresh machine.
#   make demo   compile examples/tiny_cnn.onnx to C, build it, check it against onnxruntime, time it
#   make test   the whole test suite (installs the compilers and emulators it uses first), on 2 workers
#   make test-quick   the suite less the tests marked slow (the big routine builds, full-size networks ...)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# clang for the second compiler, the aarch64 cross toolchain and qemu for the cross build test,
# OpenSSH for the remote-profiling tests (they start their own sshd on loopback).
APT_PACKAGES := gcc make cmake binutils clang lld gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user \
	openssh-server openssh-client
TEST_TOOLS := gcc make cmake nm clang aarch64-linux-gnu-gcc qemu-aarch64 ssh /usr/sbin/sshd
DEMO := build/demo/tiny_cnn

.PHONY: demo test test-quick setup setup-full system-deps lint clean

# pytest-xdist workers; --dist loadgroup keeps the tests that share one session-wide build (a routine
# family and a compiler, tests/routines/conftest.py) on one worker, so each build is made once.
WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q -n $(WORKERS) --dist loadgroup
DEMO_RUNS := 200
# Quiet installs: setuptools' editable-install notice (10 lines of warnings on every install) is about
# folder names, which paths.py handles.
PIP := PYTHONWARNINGS=ignore $(BIN)/pip install -q --disable-pip-version-check

demo: setup
	$(BIN)/neurogen compile -q --force examples/tiny_cnn.onnx -o $(DEMO)
	$(BIN)/neurogen verify -q examples/tiny_cnn.onnx $(DEMO)
	@# Timed as a C program (example/main.c -n RUNS), beside onnxruntime on one thread: timing the library
	@# through Python would add the ctypes call and the copies of the inputs and outputs to every run.
	@$(MAKE) -s -C $(DEMO) example >/dev/null
	@$(BIN)/python -c 'import numpy as np; np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype("<f4").tofile("$(DEMO)/input.bin")'
	@echo "latency of examples/tiny_cnn.onnx: batch 1, 3x224x224 input, one thread, median of $(DEMO_RUNS) runs"
	@printf '  neurogen (the generated C, example program): '; \
	$(DEMO)/build/tiny_cnn_example -n $(DEMO_RUNS) $(DEMO)/input.bin $(DEMO)/logits.bin $(DEMO)/probs.bin | sed 's/.*median //'
	@$(BIN)/python -c "$$DEMO_ORT"

# onnxruntime's median on the same input, one intra-op thread, from Python (its call overhead is small
# beside a 224x224 network).
define DEMO_ORT
import time, numpy as np, onnxruntime as ort
o = ort.SessionOptions(); o.intra_op_num_threads = 1; o.inter_op_num_threads = 1
s = ort.InferenceSession("examples/tiny_cnn.onnx", o, providers=["CPUExecutionProvider"])
x = {"input": np.fromfile("$(DEMO)/input.bin", "<f4").reshape(1, 3, 224, 224)}
s.run(None, x)
t = []
for _ in range($(DEMO_RUNS)):
    a = time.perf_counter(); s.run(None, x); t.append(time.perf_counter() - a)
print(f"  onnxruntime {ort.__version__} (CPU, 1 thread): {1e3 * float(np.median(t)):.3f} ms over $(DEMO_RUNS) runs")
endef
export DEMO_ORT

test: setup-full system-deps
	$(BIN)/ruff check codegen tests bench
	$(PYTEST)

# The edit-test loop: everything but the tests marked slow (tests/conftest.py says which), a few minutes.
test-quick: setup-full system-deps
	$(BIN)/ruff check codegen tests bench
	$(PYTEST) -m "not slow"

setup: $(VENV)/.installed

# The core install (what the demo needs: neurogen and onnxruntime to check it against).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -e '.[test]'
	touch $@

# The heavy extras the tests also use: TensorFlow (Keras/TFLite import, benchmark peers), torch (CPU wheel).
setup-full: $(VENV)/.installed-full

$(VENV)/.installed-full: $(VENV)/.installed
	$(PIP) -e '.[test,tf,torch,bench]' torch==2.13.0
	touch $@

system-deps:
	@missing=$$(for t in $(TEST_TOOLS); do command -v $$t >/dev/null || echo $$t; done); \
	if [ -n "$$missing" ]; then \
		echo "installing system packages for: $$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_PACKAGES); \
	fi

lint: setup
	$(BIN)/ruff check codegen tests bench

clean:
	rm -rf build $(VENV)
