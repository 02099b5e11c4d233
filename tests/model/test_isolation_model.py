"""Model-based test: hostile tenants, a careless admin and bad timing against the real lab.

Hypothesis interleaves tenant API calls (two projects' tokens: create, delete at any
spawn step, delete another tenant's instance), admin CLI commands (`switch port-set`,
`switch apply`, `node delete`/`node add`, `node clear`, `reconcile`, `reconcile
--dry-run`) and injected faults (a switch commit that fails, a session dropped
before or after its commit, a BMC that stalls, a disk pulled), and after every step
checks the safety invariants of DESIGN.md from outside:

(a) isolation: the switch's committed state, read over NETCONF, puts a node's port in
    a project VLAN only while that project's instance on it is active (or moving its
    port), and no unbound port in any project VLAN (`lifecycle.invariants`);
(b) no node is `available` with a disk that was not erased (the lab's disk bytes);
(c) a refused admin change leaves the desired state as it was, and the desired state
    of every port stays within the guard's rule (`switches.guard`).

Hypothesis prints the failing steps; METALNET_MODEL_SEED=N replays one seed.
Bounded to run in CI in about two minutes.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, event, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from modellab import NODES, PORTS, PROJECTS, STEP_SECONDS, SWITCH, ModelLab, until

NODE_NAMES = tuple(f"n{i + 1}" for i in range(NODES))
INSTANCE_NAMES = ("web", "db")  # shared by both tenants: names collide across projects
SPAWN_STEPS = ("port_to_service", "pxe_boot", "deploy", "disk_boot", "port_to_project")
VLAN_KINDS = ("alpha", "beta", "service", "parking")
INTERFACES = tuple(f"ge-0/0/{i}" for i in range(PORTS))


class IsolationModel(RuleBasedStateMachine):
    """One lab per example; every rule is an entry point or a fault, never a shortcut."""

    def __init__(self) -> None:
        super().__init__()
        self.lab = ModelLab()

    @initialize()
    def enrolled(self) -> None:
        """Newly enrolled nodes are erased before anything else happens."""
        self.lab.settle()

    def teardown(self) -> None:
        """Every example ends settled and judged, so no lifecycle escapes the checks."""
        try:
            self.settle()
            self.isolation_holds_on_the_switch()
            self.no_node_offered_unerased()
        finally:
            self.lab.close()

    def vlan(self, kind: str) -> int:
        if kind in PROJECTS:
            return self.lab.world.vlans[kind]
        return (
            self.lab.settings.service_vlan if kind == "service" else self.lab.settings.parking_vlan
        )

    # Tenants -------------------------------------------------------------------------

    @rule(
        project=st.sampled_from(PROJECTS),
        name=st.sampled_from(INSTANCE_NAMES),
        node=st.sampled_from((*NODE_NAMES, None)),
    )
    def create(self, project: str, name: str, node: str | None) -> None:
        body = {
            "name": name,
            "network": "net",
            "image_url": self.lab.world.lab.image_url,
            "sha256": self.lab.world.lab.image_sha256,
        }
        if node is not None:
            body["node"] = node
        reply = self.lab.tenant(project).post("/v1/instances", json=body)
        event(f"create: HTTP {reply.status_code}")
        assert reply.status_code < 500, reply.text

    @rule(project=st.sampled_from(PROJECTS), name=st.sampled_from(INSTANCE_NAMES))
    def delete(self, project: str, name: str) -> None:
        """A tenant deletes by name; another tenant's instance of that name is untouched."""
        others = {i[0]: i[3] for i in self.lab.instances() if i[1] != project}
        reply = self.lab.tenant(project).delete(f"/v1/instances/{name}")
        assert reply.status_code < 500, reply.text
        for ident, _p, iname, state, _s, _n in self.lab.instances():
            if ident in others and state == "deleting" and others[ident] != "deleting":
                raise AssertionError(
                    f"project {project}'s DELETE {name} terminated another project's {iname}"
                )

    @rule(step=st.sampled_from(SPAWN_STEPS), pick=st.integers(0, 3))
    def delete_at_step(self, step: str, pick: int) -> None:
        """Wait for a spawn to reach `step`, then its tenant deletes it at once."""
        building = [i for i in self.lab.instances() if i[3] == "building"]
        if not building:
            return
        ident, project, name, *_ = building[pick % len(building)]

        def reached() -> bool:
            found = next(i for i in self.lab.instances() if i[0] == ident)
            return found[3] != "building" or found[4] == step or _after(found[4], step)

        until(STEP_SECONDS, f"instance {name} to reach {step}", reached)
        reply = self.lab.tenant(project).delete(f"/v1/instances/{name}")
        event(f"delete at {step}: HTTP {reply.status_code}")
        assert reply.status_code < 500, reply.text

    @rule()
    def settle(self) -> None:
        """Every lifecycle ends, and ends with every port's desired VLAN within the rule."""
        self.lab.settle()
        assert not self.lab.desired_outside_rule()

    # The admin -----------------------------------------------------------------------

    @rule(interface=st.sampled_from(INTERFACES), kind=st.sampled_from(VLAN_KINDS))
    def port_set(self, interface: str, kind: str) -> None:
        vlan = self.vlan(kind)
        before = self.lab.desired()
        result = self.lab.admin("switch", "port-set", SWITCH, interface, "--vlan", str(vlan))
        self._refusal_changed_nothing(result, before, [(interface, vlan)])

    @rule(
        changes=st.lists(
            st.tuples(st.sampled_from(INTERFACES), st.sampled_from(VLAN_KINDS)),
            min_size=1,
            max_size=3,
            unique_by=lambda c: c[0],
        )
    )
    def apply(self, changes: list[tuple[str, str]]) -> None:
        moves = [(interface, self.vlan(kind)) for interface, kind in changes]
        before = self.lab.desired()
        path = self.lab.admin_file(
            "apply.json", [{"switch": SWITCH, "port": i, "vlan": v} for i, v in moves]
        )
        result = self.lab.admin("switch", "apply", path)
        self._refusal_changed_nothing(result, before, moves)

    def _refusal_changed_nothing(
        self, result, before: dict[str, int | None], moves: list[tuple[str, int]]
    ) -> None:
        """(c): a refused change wrote none of its VLANs (the lifecycle may move ports
        meanwhile, but only to a VLAN the guard admits for the port's owner now)."""
        event(f"admin port change: {'refused' if 'refused' in result.output else 'made'}")
        if "refused" not in result.output:
            return
        assert result.code != 0, result.output
        after, owners = self.lab.desired(), self.lab.owners()
        for interface, vlan in moves:
            if after.get(interface) == vlan and before.get(interface) != vlan:
                rule = self.lab.guard_rule(owners.get(interface))
                assert vlan in rule.vlans, (
                    f"refused change of {interface} to VLAN {vlan} was written: {result.output}"
                )

    @rule(node=st.sampled_from(NODE_NAMES))
    def node_delete(self, node: str) -> None:
        result = self.lab.admin("node", "delete", node)
        assert result.code in (0, 1, 2), result.output

    @rule(node=st.sampled_from(NODE_NAMES))
    def node_add(self, node: str) -> None:
        """Re-enrol a deleted node with its own MAC, port and BMC (a quarantine bypass try)."""
        if node in self.lab.node_states():
            return
        result = self.lab.enrol(node)
        assert result.code == 0, result.output

    @rule(node=st.sampled_from(NODE_NAMES))
    def node_clear(self, node: str) -> None:
        result = self.lab.admin("node", "clear", node)
        assert result.code in (0, 1, 2), result.output

    @rule()
    def reconcile(self) -> None:
        result = self.lab.admin("reconcile")
        assert result.code in (0, 1), result.output

    @rule()
    def reconcile_dry_run(self) -> None:
        """A dry run writes nothing (checked once no lifecycle runs, so nothing else does)."""
        self.lab.settle()
        before = self.lab.fingerprint()
        result = self.lab.admin("reconcile", "--dry-run")
        assert result.code in (0, 1), result.output
        assert self.lab.fingerprint() == before, "reconcile --dry-run wrote to the database"

    # Faults --------------------------------------------------------------------------

    @rule()
    def switch_commit_fails(self) -> None:
        self.lab.switch.faults.fail_next_commit("error: configuration database modified")

    @rule(after=st.booleans())
    def switch_drops_session(self, after: bool) -> None:
        self.lab.switch.faults.drop_next("commit", after=after)

    @rule(node=st.sampled_from(NODE_NAMES), stalled=st.booleans())
    def bmc_stalls(self, node: str, stalled: bool) -> None:
        self.lab.node(node).bmc.stall(stalled)

    @precondition(lambda self: any(n.disk.exists() for n in self.lab.world.lab.nodes))
    @rule(node=st.sampled_from(NODE_NAMES))
    def disk_pulled(self, node: str) -> None:
        disk = self.lab.node(node).disk
        if disk.exists():
            disk.rename(disk.with_suffix(".pulled"))

    @rule(node=st.sampled_from(NODE_NAMES))
    def disk_back(self, node: str) -> None:
        """The operator puts the node's disk back (its data still on it)."""
        disk = self.lab.node(node).disk
        if disk.with_suffix(".pulled").exists():
            disk.with_suffix(".pulled").rename(disk)

    # After every step ----------------------------------------------------------------

    @invariant()
    def isolation_holds_on_the_switch(self) -> None:
        assert not (found := self.lab.isolation_violations()), found

    @invariant()
    def no_node_offered_unerased(self) -> None:
        assert not (found := self.lab.unerased_offers()), found


def _after(current: str, step: str) -> bool:
    return current in SPAWN_STEPS and SPAWN_STEPS.index(current) > SPAWN_STEPS.index(step)


if model_seed := os.environ.get("METALNET_MODEL_SEED"):
    seed(int(model_seed))(IsolationModel)
IsolationModel.TestCase.settings = settings(
    max_examples=int(os.environ.get("METALNET_MODEL_EXAMPLES", "4")),
    stateful_step_count=int(os.environ.get("METALNET_MODEL_STEPS", "15")),
    deadline=None,
    derandomize=False,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)
TestIsolationModel = IsolationModel.TestCase
