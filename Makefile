# The two commands of README.md.
.PHONY: run test

run:
	bash scripts/run.sh

test:
	bash scripts/test.sh $(PYTEST_ARGS)
