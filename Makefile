# genpipe's two entry points are `make pipeline` and `make test`; each creates .venv when absent.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
# Local stores live inside the project (both ignored by git). genpipe.settings reads these at run
# time; the MLflow SQLite store defaults to mlflow/mlflow.db.
export PREFECT_HOME ?= $(CURDIR)/.prefect
# Offline project: no Prefect telemetry heartbeat (it also contends for the server's SQLite lock).
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
# `make flow` without a server starts a temporary Prefect API; its first start creates its
# database, which takes longer than Prefect's 20 s default on a busy 2-core machine.
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120
# A team server under load answers an occasional 500 (its database pool is busy): clients retry it.
export PREFECT_CLIENT_RETRY_EXTRA_CODES ?= 500
export PATH := $(BIN):$(PATH)
MLFLOW_PORT ?= 5000
PREFECT_PORT ?= 4200
TASK ?= restoration
SERVE_PORT ?= 5001
PYTEST_ARGS ?=

.PHONY: install pipeline test test-fast coverage lint format mlflow-ui mlflow-server serve plots flow clean docs

# Installs the exact versions in requirements.lock (so a fresh clone and CI resolve the same),
# then genpipe itself without resolving again.
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@# pip compiles the packages' bytecode on one core; compileall uses them all. Its exit
	@# status is not checked: like pip, it leaves a file that does not compile (torch ships a
	@# Python 3.12-only test module) to be compiled, or not, when imported.
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib > /dev/null || true
	touch $(STAMP)

## Create .venv if absent and install requirements.lock, then genpipe (what every target needs).
install: $(STAMP)

## Re-resolve requirements.lock from pyproject.toml (after changing a dependency), then install it.
## Existing pins stay; LOCK_ARGS=--upgrade moves every package to its newest admitted release.
LOCK_ARGS ?=
.PHONY: lock
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet pip-tools
	$(BIN)/pip-compile --quiet $(LOCK_ARGS) --extra dev --strip-extras --no-emit-index-url \
		--no-emit-find-links -o requirements.lock pyproject.toml
	$(MAKE) install

## Run the whole pipeline (dvc repro) on the params.yaml default: offline digits.
pipeline: $(STAMP)
	$(BIN)/dvc repro

# Tests run in parallel (pytest-xdist): most of their time is spent waiting on servers and
# subprocesses. Tests that must not overlap share an xdist_group. Work is handed out in the order
# tests/conftest.py sorts it (the longest first), not with the groups of most tests first.
XDIST ?= -n 4 --dist loadgroup --no-loadscope-reorder

## Run every test, slow end-to-end ones included (what CI runs).
test: $(STAMP)
	$(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)

## The quick loop: skip the slow end-to-end tests.
test-fast: $(STAMP)
	$(BIN)/python -m pytest $(XDIST) -m "not slow" $(PYTEST_ARGS)

## Line coverage of src/ and pipelines/, subprocesses included (config in pyproject.toml).
coverage: $(STAMP)
	rm -rf .coverage-data
	$(BIN)/python -m pytest $(XDIST) --cov --cov-report=term:skip-covered $(PYTEST_ARGS)

## ruff: lint and format check of src, tests, pipelines and benchmarks.
lint: $(STAMP)
	$(BIN)/ruff check src tests pipelines benchmarks
	$(BIN)/ruff format --check src tests pipelines benchmarks

## ruff: format and fix what it can.
format: $(STAMP)
	$(BIN)/ruff format src tests pipelines benchmarks
	$(BIN)/ruff check --fix src tests pipelines benchmarks

## Browse runs, metrics, images and the model registry at http://127.0.0.1:$(MLFLOW_PORT)
mlflow-ui: $(STAMP)
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow/mlflow.db \
		--default-artifact-root $(CURDIR)/mlflow/artifacts --host 127.0.0.1 --port $(MLFLOW_PORT)

## A tracking server over HTTP on the same store (set MLFLOW_TRACKING_URI=http://127.0.0.1:$(MLFLOW_PORT) to use it).
mlflow-server: $(STAMP)
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(BIN)/mlflow server --backend-store-uri sqlite:///$(CURDIR)/mlflow/mlflow.db \
		--artifacts-destination $(CURDIR)/mlflow/artifacts --host 127.0.0.1 --port $(MLFLOW_PORT)

## DVC's plots as one page that renders offline (Vega inlined): dvc_plots/offline/index.html
## (`dvc plots show` writes dvc_plots/index.html, which loads Vega from a CDN).
## PLOTS_ARGS="diff main" compares with a revision, as `dvc plots diff main`.
PLOTS_ARGS ?= show
plots: $(STAMP)
	$(BIN)/python -m genpipe.plots $(PLOTS_ARGS)

## docs/results.md and docs/benchmarks.md, rendered from the committed records in docs/records/
## (tests/test_docs.py fails when a committed page differs from what this renders).
docs: $(STAMP)
	$(BIN)/python -m benchmarks.render_docs

## Serve a champion on http://127.0.0.1:$(SERVE_PORT)/invocations (mlflow models serve on the
## project's store): make serve TASK=restoration, make serve TASK=generation SERVE_PORT=5002
serve: $(STAMP)
	$(BIN)/genpipe serve $(TASK) --port $(SERVE_PORT)

## Remove DVC's outputs, cache and resume checkpoints (data/metrics.json and data/plots are git's).
clean:
	git clean -fdXq data
	rm -rf .dvc/cache .dvc/tmp .genpipe

# --- Shared team services (src/genpipe/services/, `services:` in params.yaml): PostgreSQL, the MLflow
# and Prefect servers on it, and an sshd serving the DVC remote; state in .services/ (git-ignored).
.PHONY: services-install services-up services-down services-status services-env services-dvc-remote services-git-remote share

## apt-get install what the services need and is missing (postgresql, openssh-server; root only).
services-install: $(STAMP)
	@$(BIN)/python -m genpipe.services install

## Start every service not running yet; then point clients at them: eval "$$(make -s services-env)"
services-up: $(STAMP) services-install
	$(BIN)/python -m genpipe.services up

## Stop them all, and supervisord (each service as a process group; SIGKILL after
## services.stop_timeout_seconds).
services-down: $(STAMP)
	$(BIN)/python -m genpipe.services down

## supervisord and each service: its state, its pid, the pid holding its port, whether it
## answers (exit 3 if something is down).
services-status: $(STAMP)
	@$(BIN)/python -m genpipe.services status

## The client environment: addresses and credentials of MLflow and Prefect, the state folder,
## the DVC remote's URL and key, the code remote.
services-env: $(STAMP)
	@$(BIN)/python -m genpipe.services env

## Make the services' DVC remote this checkout's default (in .dvc/config.local).
services-dvc-remote: $(STAMP)
	$(BIN)/python -m genpipe.services dvc-remote

## Add the services' code repo (workers clone from it) as this checkout's orchestration.git_remote.
services-git-remote: $(STAMP)
	$(BIN)/python -m genpipe.services git-remote

## Share this checkout's results: outputs, then their run records, to the DVC remote; then
## dvc.lock and the git-tracked outputs committed and pushed. SHARE_ARGS='-m "message"'
SHARE_ARGS ?=
share: $(STAMP)
	$(BIN)/genpipe share $(SHARE_ARGS)

# --- Prefect orchestration (pipelines/, prefect.yaml). PREFECT_HOME (above) keeps Prefect's state
# in the project. Start the server and the worker in their own terminals; the API URL is
# http://127.0.0.1:$(PREFECT_PORT)/api. FLOW_ARGS takes -S key=value overrides, as dvc exp run -S.
PREFECT_API := http://127.0.0.1:$(PREFECT_PORT)/api
# the work pool named in prefect.yaml
PREFECT_POOL ?= genpipe-process
FLOW_ARGS ?=
RUN_PARAMS ?=

.PHONY: pipeline-mnist prefect-server prefect-pool prefect-deploy prefect-worker prefect-run

## Run the whole pipeline once through the Prefect flow (a local, temporary API if no server is set).
flow: $(STAMP)
	$(BIN)/python -m pipelines $(FLOW_ARGS)

## The whole pipeline on real 28x28 MNIST (params/mnist.yaml), from a loopback mirror of the official
## test-split files in ../shared/datasets/mnist. Like -S, the preset stays in params.yaml afterwards
## (`git checkout params.yaml` returns to digits).
MNIST_DIR ?= $(CURDIR)/../shared/datasets/mnist
MNIST_PORT ?= 8765
pipeline-mnist: $(STAMP)
	@test -f $(MNIST_DIR)/t10k-images-idx3-ubyte.gz || { echo "no MNIST files in $(MNIST_DIR)"; exit 2; }
	$(BIN)/python -m http.server --bind 127.0.0.1 $(MNIST_PORT) --directory $(MNIST_DIR) >/dev/null 2>&1 & \
	pid=$$!; trap "kill $$pid" EXIT; sleep 1; \
	$(BIN)/python -m pipelines --preset params/mnist.yaml \
		-S 'data.download.mirrors=[http://127.0.0.1:$(MNIST_PORT)/]' $(FLOW_ARGS)

# --- Sweeps (pipelines/sweep.py): each member one DVC experiment (`dvc exp run --temp`), run by the
# Prefect flow genpipe-sweep, JOBS at once (a Prefect global concurrency limit); members stop at
# TARGET (decide: never register). SWEEP in DVC's sweep syntax, as `dvc exp run --queue -S` takes
# it; ';' separates grids listed one after another. Compare with `dvc exp show --only-changed`.
# DISPATCH=1: each member runs on a worker of orchestration.sweep_pool and comes back with
# `dvc exp pull` (docs/sweeps.md, "On the worker pools").
SWEEP ?= train.seed=range(0,3)
DISPATCH ?=
TARGET ?= decide
JOBS ?= 2
NAME ?=
.PHONY: sweep tune sweep-gc verdict-seeds

## make sweep SWEEP="train.seed=range(0,3)": the seed table and register's seed-spread flags
sweep: $(STAMP)
	$(BIN)/python -m pipelines.sweep --target $(TARGET) --jobs $(JOBS) $(if $(NAME),-n "$(NAME)") $(if $(DISPATCH),--dispatch) "$(SWEEP)"

## The seed sweep under the name register's messages give it: make verdict-seeds SEEDS=5
SEEDS ?= 3
verdict-seeds: $(STAMP)
	$(BIN)/python -m pipelines.sweep --jobs $(JOBS) "train.seed=range(0,$(SEEDS))"

## Equal-budget tuning (`tune:` in params.yaml): tune.budget members per family scored on val, then
## both families' best retrained over tune.seeds seeds and judged on test.
tune: $(STAMP)
	$(BIN)/python -m pipelines.tune --jobs $(JOBS) $(if $(DISPATCH),--dispatch)

## After `dvc exp remove <member>...`: drop their outputs from the DVC cache (GC_ARGS="--cloud":
## and the remote) and their MLflow runs and artifacts (`mlflow gc` on the named store).
GC_ARGS ?=
sweep-gc: $(STAMP)
	$(BIN)/python -m pipelines.sweep_gc $(GC_ARGS)

## The Prefect server and UI on 127.0.0.1 (foreground).
prefect-server: $(STAMP)
	$(BIN)/prefect server start --host 127.0.0.1 --port $(PREFECT_PORT)

## The process work pool the pipeline deployments use; one flow run at a time, because two
## runs on one checkout would collide on DVC's locks.
prefect-pool: $(STAMP)
	PREFECT_API_URL=$(PREFECT_API) $(BIN)/prefect work-pool create $(PREFECT_POOL) --type process --overwrite
	PREFECT_API_URL=$(PREFECT_API) $(BIN)/prefect work-pool set-concurrency-limit $(PREFECT_POOL) 1

## Every deployment of prefect.yaml (genpipe, genpipe-weekly paused, genpipe-stage/<pool>), the work
## pools it names and the automations of orchestration: in params.yaml (pipelines/deploy.py).
prefect-deploy: $(STAMP)
	PREFECT_API_URL=$(PREFECT_API) $(BIN)/python -m pipelines.deploy

## A worker that runs flow runs from the pool (foreground).
prefect-worker: $(STAMP)
	PREFECT_API_URL=$(PREFECT_API) $(BIN)/prefect worker start --pool $(PREFECT_POOL)

## Trigger the on-demand deployment, e.g. make prefect-run RUN_PARAMS="-p 'overrides=[\"vae.epochs=2\"]'"
prefect-run: $(STAMP)
	PREFECT_API_URL=$(PREFECT_API) $(BIN)/prefect deployment run genpipe-pipeline/genpipe $(RUN_PARAMS) --watch

# --- Several machines (pipelines/dispatch.py, `orchestration:` in params.yaml): the flow sends
# stages to Prefect workers on other hosts; data moves through the DVC remote. The Prefect, MLflow
# and DVC-remote addresses come from the environment: eval "$$(make -s services-env)" on the
# services host, or the same variables set by hand on a worker (PREFECT_API_URL included).
POOL ?= genpipe-gpu
WORKER_LIMIT ?= 1

.PHONY: deploy-stages worker push-code flow-dispatch

## prefect.yaml's deployments, their work pools and the automations, on $$PREFECT_API_URL.
deploy-stages: $(STAMP)
	$(BIN)/python -m pipelines.deploy

## A worker of POOL on this host, WORKER_LIMIT stages at a time: make worker POOL=genpipe-gpu
worker: $(STAMP)
	$(BIN)/python -m pipelines.worker --pool $(POOL) --limit $(WORKER_LIMIT)

## Push HEAD to orchestration.git_remote, where workers fetch a flow run's commit from.
push-code: $(STAMP)
	$(BIN)/python -m pipelines.code_remote

## One flow run that dispatches every stage to its pool, then shares the controller's results:
## make flow-dispatch FLOW_ARGS="-S vae.epochs=5"
flow-dispatch: $(STAMP)
	$(BIN)/python -m pipelines --dispatch $(FLOW_ARGS)
	$(MAKE) --no-print-directory share

# --- Data-parallel training on several machines (docs/distributed.md). Node 0 runs
# `dvc repro`; every other node joins with the same stage command (read from dvc.yaml) and its
# node rank. It needs the same commit, params.yaml and data/prepared as node 0.
TASK ?= gan
NODE_RANK ?= 1
.PHONY: train-node

## Join a multi-node training of train_$(TASK) as node $(NODE_RANK).
train-node: $(STAMP)
	GENPIPE_NODE_RANK=$(NODE_RANK) $(BIN)/python -c 'import os, yaml; \
		cmd = yaml.safe_load(open("dvc.yaml"))["stages"]["train_$(TASK)"]["cmd"]; \
		os.execvp("sh", ["sh", "-c", cmd])'

## List every target with what it does (the `##` lines above each target).
.PHONY: help
help:
	@awk '/^## /{doc = doc (doc ? " " : "") substr($$0, 4); next} /^$$/{doc = ""} \
		/^[a-z][a-z0-9-]*:/ {if (doc) {split($$0, t, ":"); printf "  %-20s %s\n", t[1], doc}; doc = ""}' \
		$(MAKEFILE_LIST)
