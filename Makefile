# Chat Sync: `make run` starts everything locally, `make test` tests everything.
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV ?= $(shell command -v uv 2>/dev/null || echo "$(HOME)/.local/bin/uv")
export PATH := $(HOME)/.local/bin:$(PATH)

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

.PHONY: install
install: ## Install uv if missing, sync the workspace, install the local AWS servers
	@bash deploy/local/install.sh

.PHONY: run
run: install ## Start every process locally (Ctrl-C stops everything)
	@bash deploy/local/run.sh

.PHONY: test
test: install ## Every package's tests, against real PostgreSQL, RabbitMQ, DynamoDB and S3
	@bash deploy/local/ensure-services.sh
	$(UV) run --frozen pytest $(PYTEST_ARGS)

.PHONY: lint
lint: ## ruff lint and format check
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .

.PHONY: typecheck
typecheck: ## mypy --strict over every package (one run each: test modules share names)
	@set -e; for package in libs/common services/*/ bench; do \
		echo "mypy $$package"; $(UV) run --frozen mypy $$package; done

.PHONY: fmt
fmt: ## Format and autofix
	$(UV) run --frozen ruff format .
	$(UV) run --frozen ruff check --fix .

.PHONY: migrate
migrate: ## Apply the migrations to the configured database
	$(UV) run --frozen python -m common.migrate upgrade head

.PHONY: token
token: ## Print a JWT: make token USER_ID=111111111 [ADMIN=1]
	@test -n "$(USER_ID)" || { echo "usage: make token USER_ID=<telegram user id> [ADMIN=1]"; exit 2; }
	@$(UV) run --frozen gateway token $(USER_ID) $(if $(ADMIN),--admin,)

.PHONY: requeue-dead
requeue-dead: ## Move parked (dead-lettered) messages back: make requeue-dead [QUEUE=name]
	$(UV) run --frozen sync-worker requeue-dead $(QUEUE)

.PHONY: bench
bench: install ## Run every benchmark and write bench/results/
	@bash deploy/local/ensure-services.sh
	$(UV) run --frozen python -m bench

.PHONY: up
up: ## Start the Docker Compose stack
	docker compose -f deploy/compose.yaml up --build -d

.PHONY: down
down: ## Stop the Docker Compose stack
	docker compose -f deploy/compose.yaml down
