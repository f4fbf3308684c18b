"""Prefect orchestration of genpipe: flows that run the DVC stages and publish their results.

No ML logic lives here; see pipelines/README.md for how to run, deploy and schedule the flow.
"""
