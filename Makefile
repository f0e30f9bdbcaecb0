# The two commands most people need: `make demo` and `make test`. Both set up what
# they need on first use (Debian packages, .venv, node_modules).
.PHONY: demo test bench lint db-start db-stop db-status db-reset db-url bootstrap deploy status

demo: bootstrap
	.venv/bin/python -m demo

bench: bootstrap
	.venv/bin/python -m bench

test:
	bash scripts/test.sh

lint: bootstrap
	.venv/bin/ruff check .
	.venv/bin/mypy

bootstrap:
	@bash scripts/bootstrap.sh

db-start: bootstrap
	.venv/bin/python -m devstack start

db-stop: bootstrap
	.venv/bin/python -m devstack stop

db-status: bootstrap
	.venv/bin/python -m devstack status

db-reset: bootstrap
	.venv/bin/python -m devstack reset

db-url: bootstrap
	@.venv/bin/python -m devstack url

# make deploy ENV=staging|production [DRY_RUN=1]: docs/deploy.md (make exports
# variables given on its command line to the recipe).
deploy:
	bash scripts/deploy.sh "$$ENV" $${DRY_RUN:+--dry-run}

# The operator's view of the database the listener settings point at.
status: bootstrap
	.venv/bin/python -m listener status
