# Two entry points: `make demo` (the main job end to end) and `make test`.
# Each creates/refreshes .venv and installs what it needs, so either works as
# the first command on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SHARED ?= ../shared
OUT    ?= out/demo
# torch is pinned to the CPU build on local disk; the constraint also holds
# when another package (litdata, transformers...) asks for torch.
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export PIP_DISABLE_PIP_VERSION_CHECK := 1
PIP := $(BIN)/python -m pip install -q

DEPS_STAMP  := $(VENV)/.deps-stamp
BUILD_STAMP := $(VENV)/.build-stamp
CSRC := $(wildcard rsdb/csrc/*.cpp rsdb/csrc/*.hpp rsdb/csrc/*.h pipeline/csrc/*.cpp pipeline/csrc/*.hpp)

.PHONY: demo test test-asan bench fuzz venv clean

$(DEPS_STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) torch==2.13.0
	$(PIP) "scikit-build-core>=0.10" "nanobind>=2.4" ninja
	$(PIP) --no-build-isolation -e ".[test,torch,hf,s3]"
	touch $@ $(BUILD_STAMP)

# Rebuild the compiled core when its sources change.
$(BUILD_STAMP): $(DEPS_STAMP) CMakeLists.txt $(CSRC)
	$(PIP) --no-build-isolation --no-deps -e .
	touch $@

venv: $(BUILD_STAMP)

test: $(BUILD_STAMP)
	$(BIN)/python -m pytest -q

# The C++ core under AddressSanitizer + UBSan, in its own build.
test-asan: $(DEPS_STAMP)
	bash .ci/asan.sh

# mosaicml-streaming (a loader peer) pins transformers<5, numpy<2.2 and xxhash<4 and pulls a
# CUDA torchvision; the benchmark only needs streaming.base, so restore the project's versions.
bench: $(BUILD_STAMP)
	$(PIP) --no-build-isolation -e ".[bench]"
	$(PIP) 'transformers>=5' 'numpy>=2.2' 'xxhash>=4' 'tokenizers>=0.22'
	$(BIN)/python -m pip uninstall -y -q torchvision || true
	$(BIN)/python benchmarks/loader_bench.py --repeat 3

# Mutation fuzzing of token shards and Megatron files (each case in a worker process):
# counts per outcome; fails unless every case is a ShardError or exact output.
fuzz: $(BUILD_STAMP)
	$(BIN)/python benchmarks/fuzz_shards.py --arrow 2000 --megatron 1000 --seed 0 --json-out out/fuzz/fuzz.json

demo: $(BUILD_STAMP)
	$(BIN)/python -m jobs.demo --shared $(SHARED) --out $(OUT)

clean:
	rm -rf build $(VENV) out
