"""Prometheus metrics: what an operator graphs and alerts on.

Commits and their duration per switch and result, changes waiting in the switch
queue, drift found by the reconciler, lifecycle step failures, and DHCP servers restarted.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

REGISTRY = CollectorRegistry()
CONTENT_TYPE = CONTENT_TYPE_LATEST

COMMITS = Counter(
    "metalnet_switch_commits",
    "Switch transactions attempted",
    ["switch", "result"],
    registry=REGISTRY,
)
COMMIT_SECONDS = Histogram(
    "metalnet_switch_commit_seconds",
    "Duration of one switch transaction",
    ["switch"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
    registry=REGISTRY,
)
PORTS_CHANGED = Counter(
    "metalnet_switch_ports_changed", "Port changes committed", ["switch"], registry=REGISTRY
)
QUEUE_DEPTH = Gauge(
    "metalnet_switch_queue_depth", "Port changes waiting for a commit", registry=REGISTRY
)
DRIFT = Gauge(
    "metalnet_drift_ports",
    "Ports whose device VLAN differed from the database at the last reconciliation",
    ["switch"],
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "metalnet_reconcile_errors",
    "Switches the reconciler could not read",
    ["switch"],
    registry=REGISTRY,
)
STEP_FAILURES = Counter(
    "metalnet_lifecycle_step_failures", "Lifecycle steps that failed", ["step"], registry=REGISTRY
)
DHCP_SERVER_RESTARTS = Counter(
    "metalnet_dhcp_server_restarts",
    "dnsmasq servers found dead and restarted by the DHCP manager",
    ["network"],
    registry=REGISTRY,
)


def exposition() -> bytes:
    """Every metric in Prometheus' text format."""
    return generate_latest(REGISTRY)
