"""Shared services a team runs once: PostgreSQL, the MLflow and Prefect servers on it (behind
credentials), and an SSH server behind the DVC remote and the code repo. genpipe bootstraps them
(cluster, role, keys, secrets, configs) and supervisord runs them; `make services-up` /
`services-down` / `services-status` / `services-env` drive them through `python -m
genpipe.services`; settings live in params.yaml.
"""
