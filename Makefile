# `make demo` and `make test` set everything up on first use (see scripts/setup.sh).
.PHONY: setup demo test bench clean

STAMP := .venv/.installed

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	.venv/bin/avatar-runtime demo --out demo_out

# Blender (bpy) runs in its own pytest process: every crash seen in full runs (a corrupted
# heap, found by the garbage collector) came after bpy had been imported in the process.
BLENDER_TESTS := tests/test_blender_addon.py tests/test_mesh_export.py

test: $(STAMP)
	.venv/bin/python -m pytest -q $(addprefix --ignore=,$(BLENDER_TESTS))
	.venv/bin/python -m pytest -q $(BLENDER_TESTS)

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do .venv/bin/python $$b || exit 1; done

clean:
	rm -rf demo_out .pytest_cache
