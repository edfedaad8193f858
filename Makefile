# neurogen: the two commands that do everything on a fresh machine.
#   make demo   compile examples/tiny_cnn.onnx to C, build it, check it against onnxruntime, time it
#   make test   the whole test suite (installs the compilers and emulators it uses first)
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

.PHONY: demo test setup setup-full system-deps lint clean

demo: setup
	$(BIN)/neurogen compile examples/tiny_cnn.onnx -o $(DEMO)
	$(BIN)/neurogen verify examples/tiny_cnn.onnx $(DEMO) --repeat 50

test: setup-full system-deps
	$(BIN)/ruff check codegen tests bench
	$(BIN)/python -m pytest -q

setup: $(VENV)/.installed

# The core install (what the demo needs: neurogen and onnxruntime to check it against).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

# The heavy extras the tests also use: TensorFlow (Keras/TFLite import, benchmark peers), torch (CPU wheel).
setup-full: $(VENV)/.installed-full

$(VENV)/.installed-full: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[test,tf,torch,bench]' torch==2.13.0
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
