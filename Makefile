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

## Whole test suite on bpy 5.0.1 (main venv) on both cores, and beside it the add-on tests that exercise what differs
## between Blender versions (marked blender_versions) on Blender 4.2 and 4.5 LTS (their venvs are made on first use).
test: setup
	@# The LTS runs (set-up, mostly download and unpacking, then the tests; 4.2 and 4.5 at once, each in its own
	@# temporary folder) go on while the main suite runs, so that both cores stay busy through the main suite's slow
	@# files and waits; their logs are printed after it.
	@mkdir -p .venv/logs
	@TMPDIR=$$(mktemp -d) bash scripts/test_blender.sh 4.2 -m blender_versions -p no:cacheprovider \
	   > .venv/logs/test-bpy42.log 2>&1 & p42=$$!; \
	 TMPDIR=$$(mktemp -d) bash scripts/test_blender.sh 4.5 -m blender_versions -p no:cacheprovider \
	   > .venv/logs/test-bpy45.log 2>&1 & p45=$$!; \
	 $(PY) -m pytest -q -n 2 --dist loadfile; rc=$$?; \
	 wait $$p42 || rc=1; wait $$p45 || rc=1; \
	 for v in 42 45; do \
	   echo "== Blender LTS, tests marked blender_versions ($$v)"; \
	   grep -v -e "^WARNING: Location" -e "^Requirement already" .venv/logs/test-bpy$$v.log; \
	 done; \
	 exit $$rc
