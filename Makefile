# Two commands do all set-up on a fresh machine:
#   make demo   - create .venv, install (CPU torch first), run the demo on bundled data -> demo_out/report.md
#   make test   - create .venv, install with the test, Scipion and scene extras and cryoDRGN's STAR parsers, install RELION and Xvfb, run the tests

VENV ?= .venv
PYTHON ?= python3
TORCH_VERSION ?= 2.13.0
PY := $(VENV)/bin/python
PIP := $(PY) -m pip

.PHONY: demo test relion xvfb bench clean

$(VENV)/.installed-base: setup.py
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# The pinned CPU build first: a bare torch requirement would pull several GB of CUDA packages.
	$(PIP) install --quiet torch==$(TORCH_VERSION)
	$(PIP) install --quiet -e .
	touch $@

$(VENV)/.installed-tests: $(VENV)/.installed-base
	$(PIP) install --quiet -e '.[tests,scipion,scene]'
	# --no-deps: PyPI's torchvision is a CUDA build pinned to another torch, imported only by topaz's own training sampler (unused); h5py is the one other requirement our imports reach.
	$(PIP) install --quiet --no-deps topaz-em==0.3.20 'h5py>=3.7'
	# The interop extra without its requirements (Jupyter, UMAP, ...): cryoDRGN's parse_pose_star and parse_ctf_star import only pyyaml and igraph (with texttable) beyond ours.
	$(PIP) install --quiet --no-deps 'cryodrgn==4.3.1; python_version >= "3.10"' 'pyyaml>=6' 'igraph>=0.10' 'texttable>=1.6.2'
	touch $@

demo: $(VENV)/.installed-base
	$(VENV)/bin/cryorefine demo --out demo_out
	@echo "report: demo_out/report.md"

relion:
	@command -v relion_project >/dev/null 2>&1 || { \
		echo "installing RELION (Debian package)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq relion >/dev/null; }

# The virtual screen the Scipion GUI test draws on (tests/test_scipion_gui.py).
xvfb:
	@command -v Xvfb >/dev/null 2>&1 || { \
		echo "installing Xvfb (Debian package)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xvfb >/dev/null; }

test: $(VENV)/.installed-tests relion xvfb
	$(PY) -m pytest

bench: $(VENV)/.installed-base relion
	$(VENV)/bin/cryorefine bench simulate --particles 1000 --box 128 --record docs/bench_records.jsonl

clean:
	rm -rf $(VENV) demo_out
