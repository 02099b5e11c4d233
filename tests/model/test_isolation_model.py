"""Model-based test: hostile tenants, a careless admin and bad timing against the real lab.

Hypothesis interleaves tenant API calls (two projects' tokens: create, delete at any
spawn step, delete another tenant's instance), admin CLI commands (`switch port-set`,
`switch apply`, `node delete`/`node add`, `node clear`, `reconcile`, `reconcile
--dry-run`) and injected faults (a switch commit that fails, a session dropped
before or after its commit, a BMC that stalls, a disk pulled), and after every step
checks the safety invariants of DESIGN.md from outside:

(a) isolation: the switch's committed state, read over NETCONF, puts a node's port in
    a project VLAN only while that project's instance on it is active (or moving its
    port), and no unbound port in any project VLAN; and a node that runs a tenant's OS
    (its simulated BMC powered it on from its deployed disk) has its port exactly in
    its instance's project VLAN or disabled, never enabled anywhere else, such as the
    service VLAN after a BMC that stalled did not power it off (`lifecycle.invariants`);
(b) no node is `available` with a disk that was not erased (the lab's disk bytes);
(c) a refused admin change leaves the desired state as it was, and the desired state
    of every port stays within the guard's rule (`switches.guard`);
(d) every node's state is one its instance's state allows (`states.NODE_STATES`): a
    failed plan never leaves a node looking busy.

A failure names the steps that ran and the seed: METALNET_MODEL_SEED=N reruns it
(METALNET_MODEL_EXAMPLES and METALNET_MODEL_STEPS widen the search).
Bounded to run in CI in about two minutes.
"""

from __future__ import annotations

import os
import random

from hypothesis import HealthCheck, Phase, event, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from metalnet.lifecycle.states import SPAWN
from metalnet.sim.lab.model import NODES, PORTS, PROJECTS, STEP_SECONDS, SWITCH, ModelLab, until

NODE_NAMES = tuple(f"n{i + 1}" for i in range(NODES))
INSTANCE_NAMES = ("web", "db")  # shared by both tenants: names collide across projects
SPAWN_STEPS = tuple(str(step) for step in SPAWN.steps)
VLAN_KINDS = ("alpha", "beta", "service", "parking")
INTERFACES = tuple(f"ge-0/0/{i}" for i in range(PORTS))


class IsolationModel(RuleBasedStateMachine):
    """One lab per example; every rule is an entry point or a fault, never a shortcut."""

    def __init__(self) -> None:
        super().__init__()
        self.lab = ModelLab()
        # What ran, for the failure message: the lab is not deterministic, so
        # Hypothesis's own replay of a failure may take another path.
        self.trace: list[str] = [f"rerun with METALNET_MODEL_SEED={MODEL_SEED}"]
        print(self.trace[0])  # shown with any failure of this example

    def did(self, what: str) -> None:
        self.trace.append(f"{len(self.trace):3d}. {what}")

    def got(self, outcome: object) -> None:
        self.trace[-1] += f" -> {outcome}"

    def judged(self, found: list[str]) -> None:
        assert not found, "\n".join([*found, "after these steps:", *self.trace])

    @initialize()
    def enrolled_then_spawning(self) -> None:
        """Newly enrolled nodes are erased first; then each tenant starts a spawn, so
        every example has lifecycles in flight for the other rules to interleave with."""
        self.lab.settle()
        self.create("alpha", "web", None)
        self.create("beta", "web", None)

    def teardown(self) -> None:
        """Every example ends settled and judged, so no lifecycle escapes the checks."""
        try:
            self.settle()
            self.isolation_holds_on_the_switch()
            self.no_node_offered_unerased()
            self.node_states_follow_their_instances()
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
        self.did(f"tenant {project} creates {name} on {node or 'any node'}")
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
        self.got(reply.status_code)
        assert reply.status_code < 500, reply.text

    @rule(project=st.sampled_from(PROJECTS), name=st.sampled_from(INSTANCE_NAMES))
    def delete(self, project: str, name: str) -> None:
        """A tenant deletes by name; another tenant's instance of that name is untouched."""
        self.did(f"tenant {project} deletes {name}")
        others = {i[0]: i[3] for i in self.lab.instances() if i[1] != project}
        reply = self.lab.tenant(project).delete(f"/v1/instances/{name}")
        self.got(reply.status_code)
        assert reply.status_code < 500, reply.text
        for ident, _p, iname, state, _s, _n in self.lab.instances():
            if ident in others and state == "deleting" and others[ident] != "deleting":
                raise AssertionError(
                    f"project {project}'s DELETE {name} terminated another project's {iname}"
                )

    @rule(
        step=st.sampled_from(SPAWN_STEPS),
        project=st.sampled_from(PROJECTS),
        name=st.sampled_from(INSTANCE_NAMES),
    )
    def delete_at_step(self, step: str, project: str, name: str) -> None:
        """A tenant's spawn (started now unless one is in flight) is deleted by its
        tenant the moment it reaches `step`."""
        self.did(f"a tenant deletes a spawn at {step}")
        building = [i for i in self.lab.instances() if i[3] == "building"]
        if not building:
            self.create(project, name, None)
            building = [i for i in self.lab.instances() if i[3] == "building"]
        if not building:
            event("delete at a step: no spawn could start")
            return
        ident, project, name, *_ = building[0]

        def reached() -> bool:
            found = next(i for i in self.lab.instances() if i[0] == ident)
            return found[3] != "building" or found[4] == step or _after(found[4], step)

        until(STEP_SECONDS, f"instance {name} to reach {step}", reached)
        found = next(i for i in self.lab.instances() if i[0] == ident)
        reply = self.lab.tenant(project).delete(f"/v1/instances/{name}")
        event(f"delete at {step}: {found[3]} at {found[4]}, HTTP {reply.status_code}")
        assert reply.status_code < 500, reply.text

    @rule()
    def settle(self) -> None:
        """Every lifecycle ends, and ends with every port's desired VLAN within the rule."""
        self.did("wait for the lifecycle to settle")
        self.lab.settle()
        self.judged(self.lab.desired_outside_rule())

    # The admin -----------------------------------------------------------------------

    @rule(
        command=st.sampled_from(("port-set", "apply")),
        changes=st.lists(
            st.tuples(st.sampled_from(INTERFACES), st.sampled_from(VLAN_KINDS)),
            min_size=1,
            max_size=3,
            unique_by=lambda c: c[0],
        ),
    )
    def port_change(self, command: str, changes: list[tuple[str, str]]) -> None:
        """`switch port-set` (the first change) or `switch apply` (all of them)."""
        self.did(f"admin switch {command} {changes}")
        moves = [(interface, self.vlan(kind)) for interface, kind in changes]
        if command == "port-set":
            moves = moves[:1]
            (interface, vlan), *_ = moves
            args = ["switch", "port-set", SWITCH, interface, "--vlan", str(vlan)]
        else:
            batch = [{"switch": SWITCH, "port": i, "vlan": v} for i, v in moves]
            args = ["switch", "apply", self.lab.admin_file("apply.json", batch)]
        before = self.lab.desired()
        result = self.lab.admin(*args)
        self.got(f"exit {result.code}")
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

    @rule(command=st.sampled_from(("delete", "add", "clear")), node=st.sampled_from(NODE_NAMES))
    def node_admin(self, command: str, node: str) -> None:
        """`node delete`, `node add` (a deleted node again with its own MAC, port and BMC:
        the quarantine bypass) or `node clear`."""
        self.did(f"admin node {command} {node}")
        if command == "add":
            if node in self.lab.node_states():
                return
            result = self.lab.enrol(node)
            assert result.code == 0, result.output
        else:
            result = self.lab.admin("node", command, node)
            assert result.code in (0, 1, 2), result.output

    @rule(dry_run=st.booleans())
    def reconcile(self, dry_run: bool) -> None:
        """`reconcile`; a dry run, once no lifecycle runs (so nothing else writes),
        must write nothing at all."""
        self.did(f"admin reconcile{' --dry-run' if dry_run else ''}")
        if not dry_run:
            result = self.lab.admin("reconcile")
            assert result.code in (0, 1), result.output
            return
        self.lab.settle()
        before = self.lab.fingerprint()
        result = self.lab.admin("reconcile", "--dry-run")
        assert result.code in (0, 1), result.output
        assert self.lab.fingerprint() == before, "reconcile --dry-run wrote to the database"

    # Faults --------------------------------------------------------------------------

    @rule(
        fault=st.sampled_from(
            ("commit fails", "drop before commit", "drop after commit", "bmc stall", "bmc back")
        ),
        node=st.sampled_from(NODE_NAMES),
    )
    def fault(self, fault: str, node: str) -> None:
        """The simulators' fault injection: the switch's next commit, a node's BMC."""
        self.did(f"fault: {fault} ({node})")
        faults = self.lab.switch.faults
        if fault == "commit fails":
            faults.fail_next_commit("error: configuration database modified")
        elif fault.startswith("drop"):
            faults.drop_next("commit", after=fault.endswith("after commit"))
        else:
            self.lab.node(node).bmc.stall(fault == "bmc stall")

    @rule()
    def delete_with_bmc_stalled(self) -> None:
        """A tenant deletes an active instance whose node's BMC has just stalled: the
        power-off fails while the tenant's OS runs, so the port must leave the project
        VLAN disabled. (Random faults and deletes rarely meet on the same node.)"""
        self.did("a tenant deletes an active instance whose BMC stalled")
        active = [i for i in self.lab.instances() if i[3] == "active"]
        if not active:
            event("delete with a stalled BMC: no active instance")
            self.got("no active instance")
            return
        _ident, project, name, _state, _step, node = active[0]
        self.lab.node(node).bmc.stall()
        reply = self.lab.tenant(project).delete(f"/v1/instances/{name}")
        self.got(f"{project} {name} on {node}: HTTP {reply.status_code}")
        assert reply.status_code < 500, reply.text

    @rule(node=st.sampled_from(NODE_NAMES))
    def disk(self, node: str) -> None:
        """A node's disk is pulled, or put back with its data still on it."""
        self.did(f"disk of {node} pulled or put back")
        disk = self.lab.node(node).disk
        pulled = disk.with_suffix(".pulled")
        if disk.exists():
            disk.rename(pulled)
        else:
            pulled.rename(disk)

    # After every step ----------------------------------------------------------------

    @invariant()
    def isolation_holds_on_the_switch(self) -> None:
        self.judged(self.lab.isolation_violations())

    @invariant()
    def no_node_offered_unerased(self) -> None:
        self.judged(self.lab.unerased_offers())

    @invariant()
    def node_states_follow_their_instances(self) -> None:
        self.judged(self.lab.node_state_violations())


def _after(current: str, step: str) -> bool:
    return current in SPAWN_STEPS and SPAWN_STEPS.index(current) > SPAWN_STEPS.index(step)


# The seed is always explicit, so a failure can be rerun: it heads every failure's steps.
MODEL_SEED = int(os.environ.get("METALNET_MODEL_SEED") or random.randrange(2**32))
seed(MODEL_SEED)(IsolationModel)
IsolationModel.TestCase.settings = settings(
    max_examples=int(os.environ.get("METALNET_MODEL_EXAMPLES", "8")),
    stateful_step_count=int(os.environ.get("METALNET_MODEL_STEPS", "30")),
    deadline=None,
    # No shrinking (nor its explain phase, which traces every line): one example runs a
    # whole lab for minutes, shrinking one failure took longer than CI allows, and every
    # failure already names its seed and every step it took.
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
    derandomize=False,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
    database=None,
)
TestIsolationModel = IsolationModel.TestCase
