# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-fast lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/beach host

test: $(STAMP)
	$(BIN)/python -m pytest -q

# Unit tests only (no beach processes, namespaces or load): well under a minute.
test-fast: $(STAMP)
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
	rm -rf $(VENV) build *.egg-info .pytest_cache
