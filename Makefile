# The two commands a newcomer needs: `make demo` and `make test`. Each bootstraps .venv.
# `make test-fast` leaves out the tests marked slow (demo-scale learning, a local cluster and
# `ray job submit`, driver kills, multi-epoch Ray Train).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo serve test test-fast browser lint bench clean serve-yaml

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/radzero demo --config configs/local.yaml

# The demo's registered model on 127.0.0.1 until Ctrl-C; Ray's output in runs/demo/logs/serve.log.
serve: $(STAMP)
	HF_HUB_OFFLINE=1 $(VENV)/bin/radzero serve --config configs/local.yaml \
		--set model=radzero-demo@best registry=runs/demo/registry --log runs/demo/logs/serve.log

# The page's browser test (tests/test_page.py) drives Debian's chromium; installing it needs root.
browser:
	test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || \
		(apt-get update && apt-get install -y --no-install-recommends chromium chromium-driver)

test: $(STAMP) browser
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" HF_HUB_OFFLINE=1 $(PY) -m pytest -q

test-fast: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(STAMP)
	$(PY) bench/vlcabs.py
	$(PY) bench/decode_memory.py
	HF_HUB_OFFLINE=1 $(PY) bench/preprocess.py
	HF_HUB_OFFLINE=1 $(PY) bench/train.py
	HF_HUB_OFFLINE=1 $(PY) bench/tune.py
	HF_HUB_OFFLINE=1 $(PY) bench/serve.py

serve-yaml: $(STAMP)
	$(VENV)/bin/serve build radzero.platform.serve:app -o deploy/serve.yaml
	$(PY) deploy/edit_serve_yaml.py deploy/serve.yaml

clean:
	rm -rf runs .pytest_cache
