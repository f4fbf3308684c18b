"""Shared services a team runs once: PostgreSQL, the MLflow and Prefect servers on it, and an SSH
server behind the DVC remote. `make services-up` / `services-down` / `services-status` /
`services-env` drive them through `python -m genpipe.services`; settings live in params.yaml.
"""
