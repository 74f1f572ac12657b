# Entry points; each is a script in scripts/ that installs what it needs.
# `make` and `make install` are what PGXN's client runs on a source
# distribution: build and install the release build with cargo-pgrx
# (Rust and cargo-pgrx required), for the pg_config on PATH or PG_CONFIG.
.PHONY: all install demo test bench bench-smoke bench-instructions fuzz deb pgxn
PG_CONFIG ?= $(shell command -v pg_config || echo /usr/lib/postgresql/15/bin/pg_config)
# Build for that pg_config's major only (Cargo.toml's default feature is pg15).
BUILD_MAJOR := $(shell "$(PG_CONFIG)" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
PGRX_ARGS := --pg-config "$(PG_CONFIG)" --no-default-features --features pg$(BUILD_MAJOR)

all:
	cargo pgrx package $(PGRX_ARGS)

install:
	cargo pgrx install --release $(PGRX_ARGS)

demo:
	bash scripts/demo.sh

test:
	bash scripts/test.sh

bench:
	bash scripts/bench.sh

bench-smoke:
	bash scripts/bench.sh --smoke

bench-instructions:
	bash scripts/bench-instructions.sh

fuzz:
	bash scripts/fuzz.sh $(SECONDS)

deb:
	bash scripts/package-deb.sh

pgxn:
	bash scripts/pgxn-dist.sh
