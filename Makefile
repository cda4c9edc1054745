# The two set-up commands of the README.  Both create/reuse .venv (Python 3.11, pinned).
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint setup
setup:
	@bash scripts/setup_venv.sh $(VENV) requirements/dev.txt

## Main job on the embedded default (free body model; nothing downloaded at run time).
demo: setup
	$(PY) -m backend demo --out out/demo

## Lint: ruff with the configuration in pyproject.toml (pinned in requirements/dev.txt).
lint: setup
	$(PY) -m ruff check .

## Whole test suite on bpy 5.0.1 (main venv) on both cores, then the add-on tests that exercise what differs
## between Blender versions (marked blender_versions) on Blender 4.2 and 4.5 LTS (their venvs are made on first use).
test: setup
	@# The LTS venvs are made while the main suite runs (mostly download and unpacking: little CPU); their
	@# set-up logs are printed only when one fails.
	@mkdir -p .venv/logs
	@bash scripts/test_blender.sh 4.2 --setup-only > .venv/logs/setup-bpy42.log 2>&1 & p42=$$!; \
	 bash scripts/test_blender.sh 4.5 --setup-only > .venv/logs/setup-bpy45.log 2>&1 & p45=$$!; \
	 $(PY) -m pytest -q -n 2 --dist loadfile; rc=$$?; \
	 wait $$p42 || { cat .venv/logs/setup-bpy42.log; rc=1; }; \
	 wait $$p45 || { cat .venv/logs/setup-bpy45.log; rc=1; }; \
	 exit $$rc
	bash scripts/test_blender.sh 4.2 -m blender_versions -n 2 --dist loadfile
	bash scripts/test_blender.sh 4.5 -m blender_versions -n 2 --dist loadfile
