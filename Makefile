# Entry points; each is a script in scripts/ that installs what it needs.
# `make` and `make install` are what PGXN's client runs on a source
# distribution: build and install the release build with cargo-pgrx
# (Rust and cargo-pgrx required), for the pg_config on PATH or PG_CONFIG.
.PHONY: all install demo test bench bench-smoke fuzz deb pgxn
PG_CONFIG ?= $(shell command -v pg_config || echo /usr/lib/postgresql/15/bin/pg_config)

all:
	cargo pgrx package --pg-config "$(PG_CONFIG)"

install:
	cargo pgrx install --release --pg-config "$(PG_CONFIG)"

demo:
	bash scripts/demo.sh

test:
	bash scripts/test.sh

bench:
	bash scripts/bench.sh

bench-smoke:
	bash scripts/bench.sh --smoke

fuzz:
	bash scripts/fuzz.sh $(SECONDS)

deb:
	bash scripts/package-deb.sh

pgxn:
	bash scripts/pgxn-dist.sh
