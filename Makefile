# The two commands of the README: `make demo` (the main job on a built-in default) and `make test`.
# Both create the virtual environment in .venv on first use and reinstall when the package metadata
# changes, so they work on a fresh clone with nothing but python3.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# pip takes the torch build that lies on this machine's disk when it can; elsewhere the newest
# release that install_requires admits.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1

.PHONY: demo demo-paf quickstart2d digits info test format gpu-wheels clean-venv

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_PINS) || $(PY) -m pip install -q torch torchvision
	$(PY) -m pip install -q -e ".[test]"
	touch $@

# The quickstart: multi-person 2D pose (SelecSLS-42_B + the centre + offset head, the better of the
# two 2D heads on this recipe: docs/pose2d.md) trained from scratch on synthetic people, written
# on first use into runs/data/synthetic_people; then the best checkpoint evaluated with the flip
# test; last, figures to look at (learning curve, the network on unseen synthetic scenes as a
# video and a contact sheet), their paths printed last. Outputs land in
# runs/quickstart_pose2d_centre/. `make demo-paf` runs the same with the XNect PAF head.
SYNTHETIC_VAL := runs/data/synthetic_people/val
demo: $(VENV)/.installed
	$(MAKE) quickstart2d CONFIG=pose2d_centre_synthetic RUN=runs/quickstart_pose2d_centre

demo-paf: $(VENV)/.installed
	$(MAKE) quickstart2d CONFIG=pose2d_synthetic RUN=runs/quickstart_pose2d

quickstart2d:
	$(PY) -m selecsls.tools.train configs/quickstart/$(CONFIG).yaml
	$(PY) -m selecsls.tools.eval $(RUN)/best.pt --flip \
		--ann $(SYNTHETIC_VAL)/annotations.json --images $(SYNTHETIC_VAL)/images
	$(PY) -m selecsls.tools.showcase $(RUN) --threads 1

# The classification quickstart: a SelecSLS classifier on built-in real data (scikit-learn's
# digits), then its best checkpoint evaluated, then its learning curve and confusion matrix drawn.
# Outputs land in runs/quickstart/.
digits: $(VENV)/.installed
	$(PY) -m selecsls.tools.train configs/quickstart/digits.yaml
	$(PY) -m selecsls.tools.eval runs/quickstart/best.pt --data runs/data/digits/val
	$(PY) -m selecsls.tools.showcase runs/quickstart

# Every configuration at a glance and one real ImageNet image through a classifier.
info: $(VENV)/.installed
	$(PY) -m selecsls.tools.info

test: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q

format: $(VENV)/.installed
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

# Wheels a lent GPU machine's image lacks (Python 3.12 there), into .whl (git-ignored here via
# .git/info/exclude), for `python -m selecsls.tools.bench.gpu_suite` there; packages the image
# already has are dropped, since two versions of one break the install there.
GPU_WHEEL_PLATFORMS := $(foreach p,manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64,--platform $(p))
gpu-wheels:
	grep -qx '/.whl/' .git/info/exclude || echo '/.whl/' >> .git/info/exclude
	$(PYTHON) -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
		$(GPU_WHEEL_PLATFORMS) -d .whl pycocotools albumentations==2.0.8
	cd .whl && rm -f numpy-* opencv_python* pyyaml-* PyYAML-* scipy-* typing_extensions-*
	ls .whl

clean-venv:
	rm -rf $(VENV)
