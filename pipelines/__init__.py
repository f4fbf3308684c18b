"""Prefect orchestration of genpipe: flows that run dvc.yaml's stages, here or on workers.

No ML logic lives here; see pipelines/README.md for how to run, deploy and schedule the flows.
"""
