# `make demo` and `make test` set everything up on first use (see scripts/setup.sh).
.PHONY: setup demo test bench clean

STAMP := .venv/.installed

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	.venv/bin/avatar-runtime demo --out demo_out

test: $(STAMP)
	.venv/bin/python -m pytest -q

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do .venv/bin/python $$b || exit 1; done

clean:
	rm -rf demo_out .pytest_cache
