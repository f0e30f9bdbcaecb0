"""The starter Grafana dashboard (deploy/grafana/utter-listener.json) is valid JSON
that Grafana can import, and every series it queries is one the listener exports."""

from __future__ import annotations

import json
import re

from devstack.settings import ROOT
from listener.metrics import Metrics

DASHBOARD = ROOT / "deploy" / "grafana" / "utter-listener.json"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def exported_series() -> set[str]:
    return {
        family.name + suffix
        for family in Metrics().registry.collect()
        for suffix in SUFFIXES[family.type]
    }


def test_the_dashboard_is_importable_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "utter-listener"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dashboard["panels"]:
        assert panel["targets"], f"panel {panel['title']!r} queries nothing"
        assert panel["datasource"]["uid"] == "${datasource}"
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"])


def test_every_queried_series_is_exported() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\butter_[a-z_]+", target["expr"])
    }
    exported = exported_series()
    assert queried - exported == set()
    # ... and the dashboard shows each thing the listener measures.
    measured = {name.removesuffix("_bucket") for name in exported if "_count" not in name}
    shown = {name.removesuffix("_bucket") for name in queried}
    assert {n for n in measured if not n.endswith("_sum")} <= shown
