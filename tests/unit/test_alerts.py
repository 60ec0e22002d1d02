"""The shipped alert rules, checked and unit-tested with Prometheus's own promtool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from swarm import needs

PROMETHEUS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")
ALERTS = ["AutoswarmCoordinatorDown", "AutoswarmNoEvaluations", "AutoswarmAllWorkersOffline",
          "AutoswarmClaimsRefuted", "AutoswarmLeaseExpiries", "AutoswarmStoreCommitSlow",
          "AutoswarmStudyBudgetNearlySpent"]


@needs(PROMTOOL is not None, "promtool comes with the Debian prometheus package (scripts/test installs it)")
def test_alert_rules_pass_promtool_check_and_their_unit_tests():
    check = subprocess.run([PROMTOOL, "check", "rules", "alerts.yml"], cwd=PROMETHEUS, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    tested = subprocess.run([PROMTOOL, "test", "rules", "alerts_test.yml"], cwd=PROMETHEUS, capture_output=True,
                            text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_has_a_firing_test_and_prometheus_loads_the_rules():
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    names = [r["alert"] for g in rules["groups"] for r in g["rules"]]
    assert names == ALERTS
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    fired = {case["alertname"] for t in tests for case in t["alert_rule_test"] if case["exp_alerts"]}
    assert fired == set(ALERTS), "each alert is shown to fire"
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]
    compose = yaml.safe_load((PROMETHEUS.parent / "docker-compose.yml").read_text())
    assert "alertmanager" in compose["services"]
    assert "./prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in compose["services"]["prometheus"]["volumes"]
