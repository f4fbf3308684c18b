"""Run the data contract with Great Expectations 1.x: the only module that imports GX.

Each table from `genpipe.validation.tables` gets a pandas dataframe asset, a suite built in code
and a checkpoint (a checkpoint passes one dataframe to all its validation definitions, so one
per table). Results come back as plain dicts so nothing else needs GX types. GX is imported
lazily: it takes seconds, and its environment switches must be set before it loads.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd

from genpipe.validation.contract import Check

log = logging.getLogger(__name__)


def quiet_gx() -> None:
    """Silence GX: no analytics, no INFO chatter (some GX modules set their own level on import)."""
    os.environ["GX_ANALYTICS_ENABLED"] = "false"
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations  # noqa: F401

    for name in ["great_expectations", "posthog", *logging.root.manager.loggerDict]:
        if name.startswith(("great_expectations", "posthog")):
            logging.getLogger(name).setLevel(logging.WARNING)


def run_contract(
    tables: dict[str, pd.DataFrame], checks: list[Check], docs_dir: Path
) -> list[dict[str, Any]]:
    """Validate each table with its own suite, build Data Docs in `docs_dir`; one dict per check."""
    quiet_gx()
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    site = {
        "class_name": "SiteBuilder",
        "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": str(docs_dir.resolve()),
        },
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }
    context.add_data_docs_site("genpipe", site)
    source = context.data_sources.add_pandas("prepared")
    by_name = {c.name: c for c in checks}
    results: list[dict[str, Any]] = []
    for table, frame in tables.items():
        mine = [c for c in checks if c.table == table]
        if not mine:
            continue
        batch = source.add_dataframe_asset(table).add_batch_definition_whole_dataframe(table)
        expectations = [
            getattr(gxe, c.kind)(**c.kwargs, meta={"check": c.name}, notes=c.notes) for c in mine
        ]
        suite = context.suites.add(gx.ExpectationSuite(name=table, expectations=expectations))
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=table, data=batch, suite=suite)
        )
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name=table,
                validation_definitions=[definition],
                result_format={"result_format": "COMPLETE"},
            )
        )
        outcome = checkpoint.run(batch_parameters={"dataframe": frame})
        for suite_result in outcome.run_results.values():
            for res in suite_result.results:
                name = res.expectation_config.meta["check"]
                results.append(_plain(by_name[name], res.success, res.result, res.exception_info))
    context.build_data_docs(site_names=["genpipe"])
    order = {c.name: i for i, c in enumerate(checks)}
    return sorted(results, key=lambda r: order[r["check"]])


def _plain(
    check: Check, success: bool | None, result: dict, exception_info: dict | None
) -> dict[str, Any]:
    error = None
    if exception_info and exception_info.get("raised_exception"):
        error = str(exception_info.get("exception_message"))
    return {
        "check": check.name,
        "table": check.table,
        "expectation": check.kind,
        "kwargs": check.kwargs,
        "success": bool(success),
        "error": error,
        "unexpected_count": result.get("unexpected_count"),
        "unexpected_index_list": list(result.get("unexpected_index_list") or []),
        "observed_value": result.get("observed_value"),
    }
