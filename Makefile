# Two commands do all the set-up on a fresh machine:
#   make demo   runs the service with a synthetic demo shop on embedded defaults (SQLite, no servers)
#   make test   runs the whole test suite (against PostgreSQL when DATABASE_URL is set)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
# Reinstalled when the project's metadata or its one C extension changes.
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml setup.py recommender/ranking/_greedy.c | sha1sum | cut -c1-12)
PYTEST_ARGS ?=

.PHONY: demo test install system-deps bench lint clean

$(STAMP): pyproject.toml setup.py recommender/ranking/_greedy.c
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU wheel first, so that nothing below pulls a multi-GB CUDA build of torch.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[ml,server,test,bench]'
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

# Debian's Chromium (driven by Playwright in the browser tests) and a CJK font so that
# Chinese titles render. Installed once; skipped when present or when not root.
system-deps:
	@if [ ! -x /usr/bin/chromium ] || ! fc-list 2>/dev/null | grep -qi wqy; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei >/dev/null) \
	      || echo "warning: could not install chromium/fonts-wqy-microhei; browser tests will fail"; \
	  else echo "warning: run 'sudo apt-get install chromium fonts-wqy-microhei' for the browser tests"; fi; \
	fi

demo: install
	PORT=$(PORT) DJANGO_DEBUG=1 $(BIN)/python manage.py demo --port $(PORT)

test: install system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python bench/ingest.py

lint: install
	$(BIN)/python -m ruff check recommender shop_recs tests bench || true

clean:
	rm -rf var/ .pytest_cache test-artifacts
