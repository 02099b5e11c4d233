"""The fault campaign: every fault injected with work in flight, then audited.

Each fault must first have hit what it was aimed at (the change log's first failed
transaction besides the warm-up carries the terminate's port, the batch and the fault's
message, and the switch's commit history shows it applied before failing exactly when
the fault lets it; the killed worker was committing; the hand-made changes are the
drift found). Then the system is settled
(lifecycles finish, rollbacks land, the reconciler runs) and audited
(metalnet.sim.lab.faults.audit): every port in its desired VLAN or reported, no
instance stuck without a reason, nothing applied twice, and no commit that left a port
in a project VLAN that was not its own. bench/faults.py runs the same scenarios
repeatedly and prints the table.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from metalnet.sim.lab.faults.scenarios import SCENARIOS, Env, Outcome
from metalnet.sim.lab.postgres import PgCluster


@pytest.fixture
def env(request: pytest.FixtureRequest) -> Iterator[Env]:
    """PostgreSQL only for the scenarios that need it (marked `postgres`)."""
    if request.node.get_closest_marker("postgres"):
        cluster: PgCluster = request.getfixturevalue("pg_cluster")
        yield Env(cluster)
    else:
        yield Env()


def explain(outcome: Outcome) -> str:
    lines = [f"{outcome.fault}: recovered={outcome.recovered}", outcome.hit.evidence]
    lines += outcome.notes
    lines += [f"{kind}: {items}" for kind, items in outcome.lost().items()]
    lines += [f"error: {e}" for e in outcome.findings.errors]
    lines += [f"reported: {r}" for r in outcome.findings.reported]
    return "\n".join(lines)


def check(name: str, tmp_path: Path, env: Env) -> Outcome:
    outcome = SCENARIOS[name](tmp_path, env)
    assert outcome.hit.ok, f"the fault missed its target: {explain(outcome)}"
    assert outcome.lost() == {}, explain(outcome)
    assert outcome.recovered, explain(outcome)
    return outcome


@pytest.mark.postgres
def test_worker_killed_mid_batch(tmp_path: Path, env: Env) -> None:
    check("kill-worker", tmp_path, env)


def test_session_dropped_before_commit(tmp_path: Path, env: Env) -> None:
    check("drop-before-commit", tmp_path, env)


def test_session_dropped_after_commit(tmp_path: Path, env: Env) -> None:
    check("drop-after-commit", tmp_path, env)


def test_commit_refused(tmp_path: Path, env: Env) -> None:
    check("commit-refused", tmp_path, env)


def test_commit_never_confirmed_rolls_back_and_is_reconciled(tmp_path: Path, env: Env) -> None:
    # The hit shows the confirmation was lost on the transaction carrying the terminate;
    # the queue's retry on a new session then settles the pending confirmed commit, or
    # the switch rolls back and the reconciler finds and fixes the drift (the audit).
    check("never-confirmed", tmp_path, env)


def test_lock_held_beyond_budget_errors_clearly_then_recovers(tmp_path: Path, env: Env) -> None:
    check("lock-held", tmp_path, env)


def test_port_changed_by_hand_is_reported_and_fixed(tmp_path: Path, env: Env) -> None:
    outcome = check("out-of-band", tmp_path, env)
    assert outcome.findings.reported, "no drift was reported for the hand-made changes"


@pytest.mark.postgres
def test_database_restart_under_a_worker(tmp_path: Path, env: Env) -> None:
    check("db-restart", tmp_path, env)
