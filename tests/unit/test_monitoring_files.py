"""monitoring/: the Prometheus rules parse as promtool would take them, the Grafana dashboard's queries parse,
and the Prefect automations file is Prefect's own format. That every metric they name exists on a served
model's /metrics is tests/e2e/test_serve_monitoring.py's."""

from __future__ import annotations

import uuid

import pytest
import yaml

from conftest import ROOT
from maas.config import compose
from promql import DASHBOARD, RULES, PromQLError, check_rule_file, dashboard_metrics, rule_file_metrics


def test_alert_rules_parse_and_cover_errors_latency_and_drift_at_the_configured_thresholds():
    assert {"bentoml_service_request_total", "bentoml_service_request_duration_seconds_bucket", "maas_input_drift",
            "maas_prediction_class_shift"} <= rule_file_metrics(RULES)
    rules = {r["alert"]: r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    assert {"MaasHighErrorRate", "MaasSlowPredictions", "MaasInputDrift", "MaasPredictionClassShift"} <= rules.keys()
    monitor = compose().monitor  # the alerts on the live gauges fire where `maas monitor` does
    assert rules["MaasInputDrift"]["expr"].strip().endswith(f">= {monitor.feature_drift}")
    assert rules["MaasPredictionClassShift"]["expr"].strip().endswith(f">= {monitor.class_shift}")
    # The checker refuses what promtool would.
    for bad in ({"groups": [{"name": "g", "rules": [{"alert": "A", "record": "b", "expr": "x"}]}]},
                {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "rate(x)"}]}]},
                {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "x > 1", "for": "5 minutes"}]}]},
                {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "x", "labels": {"bad-name": "v"}}]}]},
                {"groups": [{"name": "g", "rules": []}, {"name": "g", "rules": []}]}):
        with pytest.raises(PromQLError):
            check_rule_file(bad)


def test_dashboard_queries_parse():
    assert {"maas_input_drift", "maas_rejected_requests_total", "bentoml_service_request_total"} <= dashboard_metrics(DASHBOARD)


def test_the_automation_file_is_prefects_format_once_its_block_is_named_by_id():
    from prefect.events.schemas.automations import AutomationCore

    from maas.monitoring.automations import WEBHOOK_BLOCK, load

    [spec] = load(ROOT / compose().orchestration.automations)
    [action] = spec["actions"]
    assert action["block_document_id"] == WEBHOOK_BLOCK  # maas deploy puts the block's id here
    automation = AutomationCore.model_validate({**spec, "actions": [{**action, "block_document_id": str(uuid.uuid4())}]})
    assert automation.trigger.expect == {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"}
    # It matches the flow the maas-monitor deployment runs.
    assert automation.trigger.match_related["prefect.resource.name"] in ("maas-monitor", ["maas-monitor"])
    assert '@flow(name="maas-monitor"' in (ROOT / "flows" / "monitor.py").read_text()
