# Entry points; each is a script in scripts/ that installs what it needs.
.PHONY: demo test bench bench-smoke fuzz

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
