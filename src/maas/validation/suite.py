"""Build and run the Great Expectations suite that `conf/expectations/` declares: maas's shorthand
keys (columns, rows, labels, ranges) plus any GX expectation listed under `expect:` (declared.py).

GX is imported here only (it costs seconds to import), and runs in an
ephemeral context: the suite lives in config, not in a GX project folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig

from maas.data.sources import feature_columns
from maas.validation.declared import build as build_declared
from maas.validation.report import exception_message, failure_entry, jsonable

DOCS_SITE = "maas"


def build_suite(data_cfg: DictConfig, exp_cfg: DictConfig):
    import great_expectations as gx
    import great_expectations.expectations as gxe

    declared = build_declared(exp_cfg)  # a bad name or argument fails before anything else is built
    features = feature_columns(data_cfg)
    label = data_cfg.label_column
    suite = gx.ExpectationSuite(name=exp_cfg.suite_name)
    suite.add_expectation(gxe.ExpectTableColumnsToMatchSet(column_set=features + [label],
                                                           exact_match=bool(exp_cfg.exact_columns)))
    suite.add_expectation(gxe.ExpectTableRowCountToBeBetween(min_value=exp_cfg.min_rows, max_value=exp_cfg.max_rows))
    suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=label))
    suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column=label, value_set=list(exp_cfg.label_set)))
    if data_cfg.kind == "table":
        from maas.data.table_preprocessor import column_settings

        for name, spec in data_cfg.features.items():
            s = column_settings(name, spec)
            if s["missing"] == "fail":
                suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=name))
            if s["type"] == "categorical":
                suite.add_expectation(gxe.ExpectColumnValuesToBeInSet(column=name, value_set=s["categories"]))
        return _add(suite, declared)
    if len(features) != exp_cfg.feature_count:
        from maas.errors import ConfigError

        raise ConfigError(
            f"expectations.feature_count={exp_cfg.feature_count} but data.image_shape "
            f"{list(data_cfg.image_shape)} implies {len(features)} features"
        )
    # check_pixels: false (an image folder: its reader has made every pixel uint8 already) skips them.
    for col in (features if exp_cfg.get("check_pixels", True) else ()):
        suite.add_expectation(gxe.ExpectColumnValuesToNotBeNull(column=col))
        suite.add_expectation(gxe.ExpectColumnValuesToBeBetween(column=col, min_value=exp_cfg.feature_min,
                                                                max_value=exp_cfg.feature_max))
    return _add(suite, declared)


def _add(suite, declared: list):
    # GX drops an entry equal to one already in the suite (a shorthand one), so nothing runs twice.
    for expectation in declared:
        suite.add_expectation(expectation)
    return suite


def validate_frame(frame: pd.DataFrame, data_cfg: DictConfig, exp_cfg: DictConfig,
                   docs_dir: Path | None = None, suite=None) -> dict[str, Any]:
    """Run the suite (default: `build_suite`'s) on `frame`; return a JSON-ready summary naming every
    failed expectation.

    With `docs_dir`, GX also renders its Data Docs (HTML for the suite and this run) there.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    # Its tqdm bars redraw per metric batch and flood DVC/Prefect logs; we print one summary line.
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    actions = []
    if docs_dir is not None:
        context.add_data_docs_site(site_name=DOCS_SITE, site_config={
            "class_name": "SiteBuilder",
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            # GX wants an absolute path when the context has no root directory.
            "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                              "base_directory": str(Path(docs_dir).resolve())},
        })
        actions.append(gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=[DOCS_SITE]))
    suite = context.suites.add(suite if suite is not None else build_suite(data_cfg, exp_cfg))
    batch_def = (context.data_sources.add_pandas("maas").add_dataframe_asset("raw")
                 .add_batch_definition_whole_dataframe("all"))
    definition = context.validation_definitions.add(gx.ValidationDefinition(name="raw", data=batch_def, suite=suite))
    checkpoint = context.checkpoints.add(gx.Checkpoint(name="maas", validation_definitions=[definition],
                                                       actions=actions))
    (result,) = checkpoint.run(batch_parameters={"dataframe": frame}).run_results.values()
    failed = [failure_entry(r.expectation_config.type, r.expectation_config.kwargs.get("column"), r.result,
                            exception_message(r.exception_info), r.expectation_config.meta)
              for r in result.results if not r.success]
    return {"suite": suite.name, "success": bool(result.success),
            "statistics": jsonable(dict(result.statistics)), "failed": failed}


def describe_failures(failed: list[dict], limit: int = 10) -> str:
    lines = []
    for f in failed[:limit]:
        col = f" on column {f['column']!r}" if f["column"] else ""
        where = f" ({f['declared']})" if f.get("declared") else ""  # an `expect:` entry: which one
        lines.append(f"  - {f['expectation']}{col}{where}: {f['details']}")
    if len(failed) > limit:
        lines.append(f"  ... and {len(failed) - limit} more")
    return "\n".join(lines)
