# RLAIF-V Studio. `make demo` and `make test` are all a newcomer needs.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
# The demo, the checks and the tests run with DEBUG on; the settings' default (and the production image) is off.
export DEBUG ?= 1

.PHONY: demo test test-fast lint venv worker manage clean gpu-wheels

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

# The embedded default: SQLite and a folder broker under var/, the shapes world and its trained tiny models.
# Two background Celery workers, one for the models' queue (gpu) and one for the cpu queue (so an upload is
# imported while the other trains), run iteration 1 to the review gate, then the app is served. Stopping the
# server (Ctrl-C, or a TERM, to make alone or to its group) stops the workers too and is not an error: the long
# steps run in the background and are waited for, so the recipe's traps act at once (make passes a TERM on).
demo: venv
	$(PY) manage.py migrate --noinput
	$(PY) manage.py build_shapes_models
	$(PY) manage.py load_shapes --train 300 --heldout 300
	@mkdir -p var
	@$(PY) -m celery -A webapp worker -B -Q gpu --pool solo -n gpu@%h --loglevel warning --logfile var/worker.log & \
	gpu=$$!; \
	$(PY) -m celery -A webapp worker -Q cpu --pool solo -n cpu@%h --loglevel warning --logfile var/worker-cpu.log & \
	cpu=$$!; trap 'kill $$gpu $$cpu $$step 2>/dev/null; wait $$gpu $$cpu 2>/dev/null' EXIT; trap 'exit 0' INT TERM; \
	$(PY) manage.py demo_iteration & step=$$!; wait $$step && \
	$(PY) manage.py demo_user && \
	echo "Serving: open http://$(HOST):$(PORT)/iterations/1/ (admin: http://$(HOST):$(PORT)/admin/)" && \
	{ $(PY) manage.py runserver $(HOST):$(PORT) --noreload & step=$$!; wait $$step; status=$$?; \
	  [ $$status -eq 0 ] || [ $$status -eq 130 ] || [ $$status -eq 143 ] || exit $$status; }

test: venv
	$(PY) manage.py check
	$(PY) manage.py makemigrations --check --dry-run
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest

# The unit tests alone (well under a minute and a half): no tiny models, no Chromium, no worker subprocesses.
test-fast: venv
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -m "not slow and not browser and not workers"

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# Any management command against the demo's settings (DEBUG on, var/), e.g. make manage ARGS="createsuperuser".
manage: venv
	$(PY) manage.py $(ARGS)

worker: venv
	$(PY) -m celery -A webapp worker -Q gpu,cpu --concurrency 1 --loglevel info

clean:
	rm -rf var

# Wheels for bench/gpu_check.py on a bare GPU machine that reaches no package index (README, "GPU check"):
# requirements-gpu-wheels.txt for Python 3.12 on x86-64 Linux, into a git-ignored folder that travels with the
# working tree, which may weigh 64 MiB in all.
GPU_WHEELS := gpu-wheels
GPU_WHEELS_LIMIT := 67108864
gpu-wheels: venv
	rm -rf $(GPU_WHEELS)
	$(PY) -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
		--platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
		-r requirements-gpu-wheels.txt -d $(GPU_WHEELS)
	@repo=$$(git ls-files -z | xargs -0 cat 2>/dev/null | wc -c); wheels=$$(cat $(GPU_WHEELS)/*.whl | wc -c); \
	total=$$((repo + wheels)); \
	echo "$(GPU_WHEELS): $$(ls $(GPU_WHEELS) | wc -l) wheels, $$((wheels / 1024)) KiB; with the repository's" \
		"$$((repo / 1024)) KiB: $$((total / 1024)) KiB of $$(($(GPU_WHEELS_LIMIT) / 1024)) KiB"; \
	if [ $$total -gt $(GPU_WHEELS_LIMIT) ]; then \
		echo "gpu-wheels: the repository and the wheels weigh $$total bytes, over the 64 MiB that can travel" \
			"to the GPU machine; drop wheels from requirements-gpu-wheels.txt or files from the repository" >&2; \
		exit 1; \
	fi
