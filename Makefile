# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The browser joiner's npm packages as web/package-lock.json pins them: `make web` (the bundle)
# and the tests (node tests of the page's modules) need them; `make run` and `pip install` never
# do, because the built page is committed in beach_cli/web/static/.
NODE_STAMP := web/node_modules/.installed

.PHONY: run test test-fast lint bench web clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

$(NODE_STAMP): web/package.json web/package-lock.json
	@command -v npm >/dev/null 2>&1 || { \
		echo "make: web/ needs Node.js 18+ and npm (on Debian: apt-get install nodejs npm)" >&2; exit 1; \
	}
	cd web && npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

# Rebuilds the page in beach_cli/web/static/ from web/ (commit the result with its sources:
# tests/test_web_page.py fails on a bundle older than them).
web: $(NODE_STAMP)
	node web/build.mjs

run: $(STAMP)
	$(BIN)/beach host

test: $(STAMP) $(NODE_STAMP)
	$(BIN)/python -m pytest -q

# Unit tests only (no beach processes, namespaces or load): well under a minute.
test-fast: $(STAMP) $(NODE_STAMP)
	$(BIN)/python -m pytest -q -m "not e2e and not netns and not load"

lint: $(STAMP)
	$(BIN)/ruff check beach_cli tests bench
	$(BIN)/ruff format --check beach_cli tests bench
	$(BIN)/mypy beach_cli
	$(BIN)/lint-imports

# The ssh baseline needs OpenSSH's sshd (the benchmark starts its own on a loopback port).
bench: $(STAMP)
	@command -v sshd >/dev/null 2>&1 || test -x /usr/sbin/sshd || { \
		SUDO=; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -q && $$SUDO apt-get install -y -q --no-install-recommends openssh-server; \
	} || echo "make bench: sshd not installed; the ssh figures will say 'ssh: not available'"
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache web/node_modules
