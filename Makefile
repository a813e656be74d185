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

.PHONY: demo test test-fast lint venv worker manage clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

# The embedded default: SQLite and a folder broker under var/, the shapes world and its trained tiny models.
# A background Celery worker runs iteration 1 to the review gate, then the app is served.
demo: venv
	$(PY) manage.py migrate --noinput
	$(PY) manage.py build_shapes_models
	$(PY) manage.py load_shapes --train 300 --heldout 300
	@mkdir -p var
	@$(PY) -m celery -A webapp worker -B -Q gpu,cpu --pool solo --loglevel warning --logfile var/worker.log & \
	worker=$$!; trap 'kill $$worker 2>/dev/null; wait $$worker 2>/dev/null' EXIT INT TERM; \
	$(PY) manage.py demo_iteration && \
	$(PY) manage.py demo_user && \
	echo "Serving: open http://$(HOST):$(PORT)/iterations/1/ (admin: http://$(HOST):$(PORT)/admin/)" && \
	$(PY) manage.py runserver $(HOST):$(PORT) --noreload

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
