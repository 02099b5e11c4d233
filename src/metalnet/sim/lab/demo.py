"""`metalnet demo`: the whole story on embedded defaults, checked at every step.

A temporary SQLite database, simulated Junos switches over real SSH, simulated BMCs
(Redfish and IPMI over the wire), nodes with file disks and real agent processes,
two projects. Every node is spawned (both projects at once, so port moves coalesce),
then terminated. After every lifecycle step the node's port is read back through the
switch's own NETCONF answer; every commit on every switch is checked against the
invariant "a port is in a project VLAN only while that project's instance is
active there"; at the end every disk must hold the image, then be erased.

With `netns` (root) the lab gets a real data plane (metalnet.sim.lab.dataplane): nodes
are network namespaces, VLANs are bridges, every network has a real dnsmasq, agents
reach the controller over the service network only, and after every step a
reachability matrix measured with packets must match what the design allows
(metalnet.sim.lab.isolation).

With `vm` (root) every node is a real QEMU machine on that data plane (see
metalnet.sim.lab.vm): its BMC (Redfish or IPMI, driven by metalnet's real sushy and
pyghmi drivers) starts it; SeaBIOS and the NIC's iPXE ROM network-boot the real
ramdisk (`metalnet ramdisk build`), whose real agent writes the demo tenant image
(`metalnet image build-demo`) to the machine's disk file; the machine then boots that
disk and takes its tenant address from its network's dnsmasq. The matrix is also
measured from inside the tenant OS (pings on its serial console), every tap's bridge
is compared with the VLAN read over NETCONF after every step, a port moved behind
metalnet's back must be caught (negative control), and after terminate every disk
file is read on the host and must be all zeros.
"""

from __future__ import annotations

import dataclasses
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select

from metalnet import inventory
from metalnet.boot import ramdisk
from metalnet.boot.demo_image import build_demo_image
from metalnet.controller import Controller
from metalnet.db.engine import Database, upgrade
from metalnet.db.models import Instance, InstanceEvent, Network, Node
from metalnet.lifecycle import instances
from metalnet.lifecycle.engine import Job
from metalnet.lifecycle.invariants import port_violation
from metalnet.lifecycle.states import SPAWN, TERMINATE, InstanceState, NodeState, Step
from metalnet.power import BootDevice, PowerState
from metalnet.sim.lab.dataplane import VM_PROBE_TIMEOUT, DataPlane
from metalnet.sim.lab.isolation import IsolationProof, Measurement
from metalnet.sim.lab.lab import Lab
from metalnet.sim.lab.netns.system import require_root
from metalnet.sim.lab.nodes import LabNode
from metalnet.sim.lab.vm import agent_runs
from metalnet.sim.lab.world import PROJECTS, lab_settings
from metalnet.sim.switch.device import SimSwitch
from metalnet.switches.junos import JunosDriver

SERVICE_CIDR = "10.10.0.0/24"  # the provisioning network's subnet (netns mode)
WAIT_SECONDS = 150.0
# QEMU machines under TCG on a shared machine: firmware, ramdisk and agent in one step.
VM_STEP_TIMEOUT = 420.0
VM_WAIT_SECONDS = 900.0
VM_DISK_MIB = 32
VM_GOAL_SECONDS = 180.0  # the whole demo with two machines
CONSOLE_TAIL = 2000
Progress = Callable[[str], None]


class Checks:
    """Invariant checks, collected from several threads."""

    def __init__(self) -> None:
        self.results: list[dict[str, object]] = []
        self.violations: list[str] = []
        self._lock = threading.Lock()

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        with self._lock:
            self.results.append({"check": name, "ok": ok, "detail": detail})
            if not ok:
                self.violations.append(f"{name}: {detail}")
        return ok

    def violation(self, detail: str) -> None:
        with self._lock:
            self.violations.append(detail)


class Demo:
    """One demo run; `run()` returns the report."""

    def __init__(
        self,
        nodes: int,
        workdir: Path,
        progress: Progress,
        commit_latency: float,
        netns: bool = False,
        vm: bool = False,
    ) -> None:
        self.workdir = workdir
        self.progress = progress
        self.vm = vm
        self.plane = DataPlane(SERVICE_CIDR) if netns or vm else None
        self.settings = lab_settings(
            workdir,
            self.plane.agent_url if self.plane else None,
            self.plane.image_base_url if self.plane else "http://127.0.0.1",
        )
        if vm:
            self.settings = dataclasses.replace(
                self.settings, ramdisk_dir=str(workdir / "ramdisk"), step_timeout=VM_STEP_TIMEOUT
            )
        self.wait_seconds = VM_WAIT_SECONDS if vm else WAIT_SECONDS
        self.db = Database(self.settings)
        switches = 2 if nodes > 2 else 1
        self.lab = Lab(
            workdir / "lab",
            self.settings,
            nodes=nodes,
            switches=switches,
            ports=max(8, nodes),
            commit_latency=commit_latency,
            dataplane=self.plane,
            disk_mib=VM_DISK_MIB if vm else 8,
            vms=vm,
        )
        self.artifacts: dict[str, object] = {}
        self.control: dict[str, object] = {}
        self._control_caught: list[str] | None = None
        self.checks = Checks()
        self.proof: IsolationProof | None = None
        self.finals: dict[str, Measurement] = {}
        self.vlans: dict[str, int] = {}
        self._readers: dict[str, JunosDriver] = {}
        self._read_lock = threading.Lock()
        self.step_reads = 0
        self.step_check_seconds: list[float] = []

    # Observation through the switches' own answers ------------------------------

    def netconf_vlan(self, node: LabNode) -> int | None:
        """The node's port VLAN as the switch reports it over NETCONF."""
        with self._read_lock:
            reader = self._readers.get(node.switch.name)
            if reader is None:
                reader = JunosDriver(node.switch.target(), timeout=30)
                reader.open()
                self._readers[node.switch.name] = reader
            return reader.read_ports([node.interface])[node.interface].vlan

    def after_step(self, job: Job, step: str) -> None:
        """Engine hook: the port must already be where this step leaves it. The node's
        lifecycle waits for these checks (timed: they are part of the demo's cost)."""
        started = time.monotonic()
        node = next(n for n in self.lab.nodes if n.name == job.node)
        in_project = job.state == SPAWN.state and step in (Step.PORT_TO_PROJECT, Step.POWER_ON)
        expected = job.project_vlan if in_project else self.settings.service_vlan
        actual = self.netconf_vlan(node)
        self.step_reads += 1
        if actual != expected:
            self.checks.violation(
                f"{job.instance} on {node.name}: after {step} port {node.interface} is in VLAN "
                f"{actual}, expected {expected}"
            )
        if self.vm:
            self.check_tap(node, actual, f"after {job.instance} {step}")
        if self.proof is not None:
            label = f"{job.instance} {step}"
            for mismatch in self.proof.measure(label).mismatches:
                self.checks.violation(f"isolation after {label}: {mismatch}")
        self.step_check_seconds.append(time.monotonic() - started)

    def check_tap(self, node: LabNode, netconf_vlan: int | None, when: str) -> None:
        """The machine's tap hangs off the bridge of the VLAN the switch reports."""
        bridge = self.plane.port_vlan(node.name)
        if bridge != netconf_vlan:
            self.checks.violation(
                f"{when}: {node.name}'s tap is on the bridge of VLAN {bridge}, "
                f"NETCONF says VLAN {netconf_vlan}"
            )

    def on_commit(self, switch: SimSwitch, vlans: dict[str, int | None]) -> None:
        """Every committed state of every port obeys the isolation invariant (during the
        negative control, what it catches is recorded as caught, not as a violation)."""
        with self.db.session() as session:
            for node in self.lab.nodes:
                if node.switch is switch:
                    problem = port_violation(session, node.name, vlans.get(node.interface))
                    if problem and self._control_caught is not None:
                        self._control_caught.append(f"{switch.name} committed: {problem}")
                    elif problem:
                        self.checks.violation(f"{switch.name} committed: {problem}")

    # The story -----------------------------------------------------------------------

    def build_artifacts(self) -> None:
        """The ramdisk and the tenant image, from their caches when nothing changed."""
        started = time.monotonic()
        built = ramdisk.build(Path(self.settings.ramdisk_dir))
        (self.workdir / "tenant").mkdir(exist_ok=True)
        image = build_demo_image(self.workdir / "tenant" / "demo.img")
        self.lab.image = image.path
        self.artifacts = {
            "ramdisk": {
                "kernel_bytes": built.kernel_bytes,
                "initrd_bytes": built.initrd_bytes,
                "cached": built.cached,
                "seconds": round(built.seconds, 2),
            },
            "tenant_image": {
                "bytes": image.size_bytes,
                "sha256": image.sha256,
                "cached": image.cached,
                "seconds": round(image.seconds, 2),
            },
            "build_seconds": round(time.monotonic() - started, 2),
        }
        self.progress(
            f"ramdisk {built.initrd_bytes >> 20} MiB initrd (cached: {built.cached}), "
            f"tenant image {image.size_bytes >> 20} MiB (cached: {image.cached})"
        )

    def setup(self) -> None:
        upgrade(self.db.engine)
        if self.vm:
            self.build_artifacts()
        self.lab.start()
        self.lab.register(self.db)
        with self.db.session() as session:
            for project, cidr in PROJECTS:
                inventory.create_project(session, project)
                net = inventory.create_network(session, self.settings, project, "net", cidr)
                self.vlans[project] = net.vlan
        for switch in self.lab.fleet.switches:
            switch.on_commit(self.on_commit)
        self.progress(
            f"lab: {len(self.lab.fleet.switches)} Junos switches, {len(self.lab.nodes)} nodes, "
            f"projects {', '.join(f'{p} (VLAN {v})' for p, v in self.vlans.items())}"
        )
        if self.plane is not None:
            self.plane.start(self.lab.nodes, self.lab.fleet.switches, self.lab.images, self.db)
            self.proof = IsolationProof(self.plane, self.db)
            self.progress(
                f"data plane {self.plane.prefix}: a namespace per node, a bridge per VLAN, "
                f"dnsmasq per network, service network {SERVICE_CIDR}"
            )

    def controller(self) -> Controller:
        """The controller, checking after every step; in netns mode it also listens on
        the Unix socket that the service network's relay forwards to."""
        uds = self.plane.controller_socket if self.plane is not None else None
        return Controller(self.db, on_step=self.after_step, uds=uds)

    def prove_isolation(self, label: str) -> None:
        """A final matrix (netns mode): every pair as the design allows, or a failed check."""
        if self.proof is None:
            return
        measurement = self.proof.measure(label)
        self.finals[label] = measurement
        self.checks.check(
            f"isolation {label} matches the design",
            measurement.ok,
            "; ".join(measurement.mismatches),
        )

    def wait(self, names: list[str], final: tuple[str, ...], timeout: float) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while True:
            with self.db.session() as session:
                states = {n: instances.get_instance(session, n).state for n in names}
            if all(s in final for s in states.values()) or time.monotonic() > deadline:
                return states
            time.sleep(0.2)

    def spawn_all(self) -> list[str]:
        names = []
        with self.db.session() as session:
            for i, node in enumerate(self.lab.nodes):
                project = PROJECTS[i % len(PROJECTS)][0]
                name = f"{project}-{node.name}"
                instances.create_instance(
                    session,
                    name,
                    project,
                    "net",
                    node.name,
                    self.lab.image_url,
                    self.lab.image_sha256,
                    settings=self.settings,
                )
                names.append(name)
        self.progress(f"spawning {len(names)} instances at once")
        started = time.monotonic()
        states = self.wait(names, (InstanceState.ACTIVE, InstanceState.ERROR), self.wait_seconds)
        self.spawn_seconds = time.monotonic() - started
        self.checks.check(
            "every instance active",
            all(s == InstanceState.ACTIVE for s in states.values()),
            ", ".join(f"{n}={s}" for n, s in states.items() if s != InstanceState.ACTIVE),
        )
        return names

    def verify_active(self) -> None:
        for i, node in enumerate(self.lab.nodes):
            project = PROJECTS[i % len(PROJECTS)][0]
            vlan = self.netconf_vlan(node)
            self.checks.check(
                f"{node.name} port in {project} VLAN",
                vlan == self.vlans[project],
                f"NETCONF says VLAN {vlan}",
            )
            if self.vm:
                continue
            self.checks.check(
                f"{node.name} boots the tenant image", node.running == "tenant image", node.running
            )
        self.prove_isolation("after spawn")
        if self.vm:
            self.verify_tenant_os()

    def verify_tenant_os(self) -> None:
        """Each machine booted its disk and its OS reported the address reserved for it
        on its project's network (the matrix above waited for the report)."""
        for i, node in enumerate(self.lab.nodes):
            vlan = self.vlans[PROJECTS[i % len(PROJECTS)][0]]
            held, reserved = node.vm.address(), self.plane.reserved(node.name, vlan)
            self.checks.check(
                f"{node.name} booted its disk", node.vm.booted_from == BootDevice.DISK
            )
            self.checks.check(
                f"{node.name} tenant OS has its tenant address",
                held is not None and held == reserved,
                f"console says {held}, reserved on VLAN {vlan}: {reserved}",
            )

    def negative_control(self) -> None:
        """Move the first node's port to the other project's VLAN behind metalnet's back:
        the commit check and the matrix must both catch it; then put it back."""
        node, home, other = (
            self.lab.nodes[0],
            self.vlans[PROJECTS[0][0]],
            self.vlans[PROJECTS[1][0]],
        )
        self._control_caught = []
        try:
            node.switch.set_port_vlan_out_of_band(node.interface, other)
            self.check_tap(node, self.netconf_vlan(node), "negative control")
            measurement = self.proof.measure("negative control")
            node.switch.set_port_vlan_out_of_band(node.interface, home)
            caught_by_commit = list(self._control_caught)
        finally:
            self._control_caught = None
        self.finals["negative control"] = measurement
        self.control = {
            "moved": f"{node.name} {node.interface}: VLAN {home} -> {other} (console change)",
            "caught_by_commit_check": caught_by_commit,
            "caught_by_matrix": measurement.mismatches,
        }
        self.checks.check(
            "negative control: the commit check caught the wrong port", bool(caught_by_commit)
        )
        self.checks.check("negative control: the matrix caught the wrong port", not measurement.ok)
        self.prove_isolation("after the negative control")

    def terminate_all(self, names: list[str]) -> None:
        with self.db.session() as session:
            for name in names:
                instances.delete_instance(session, name)
        self.progress(f"terminating {len(names)} instances")
        started = time.monotonic()
        states = self.wait(names, (InstanceState.DELETED, InstanceState.ERROR), self.wait_seconds)
        self.terminate_seconds = time.monotonic() - started
        self.checks.check(
            "every instance deleted",
            all(s == InstanceState.DELETED for s in states.values()),
            ", ".join(f"{n}={s}" for n, s in states.items() if s != InstanceState.DELETED),
        )

    def verify_terminated(self) -> None:
        with self.db.session() as session:
            node_states = dict(session.execute(select(Node.name, Node.state)).all())
        for node in self.lab.nodes:
            vlan = self.netconf_vlan(node)
            self.checks.check(
                f"{node.name} port back in service VLAN",
                vlan == self.settings.service_vlan,
                f"NETCONF says VLAN {vlan}",
            )
            self.checks.check(
                f"{node.name} disk erased (its file read on the host)", self.lab.disk_is_zero(node)
            )
            self.checks.check(f"{node.name} powered off", node.power.state == PowerState.OFF)
            self.checks.check(
                f"{node.name} available again",
                node_states[node.name] == NodeState.AVAILABLE,
                node_states[node.name],
            )
        self.prove_isolation("after terminate")

    def report(self, names: list[str]) -> dict[str, object]:
        per_step: dict[str, list[float]] = defaultdict(list)
        rows = []
        with self.db.session() as session:
            for name in names:
                inst = session.scalar(
                    select(Instance).where(Instance.name == name).order_by(Instance.id.desc())
                )
                events = session.scalars(
                    select(InstanceEvent).where(
                        InstanceEvent.instance_id == inst.id, InstanceEvent.seconds.is_not(None)
                    )
                ).all()
                phase = "spawn"
                for event in events:
                    per_step[f"{phase}:{event.step}"].append(event.seconds or 0.0)
                    if event.step == SPAWN.steps[-1]:
                        phase = "terminate"
                port = inventory.node_port(inst.node)
                rows.append(
                    {
                        "instance": name,
                        "project": inst.project.name,
                        "node": inst.node.name,
                        "switch": port.switch.name,
                        "port": port.interface,
                        "project_vlan": session.get(Network, inst.network_id).vlan,
                        "final_state": inst.state,
                    }
                )
        order = [f"spawn:{s}" for s in SPAWN.steps] + [f"terminate:{s}" for s in TERMINATE.steps]
        steps = {k: round(statistics.mean(per_step[k]), 3) for k in order if per_step[k]}
        commits = sum(s.commit_count() for s in self.lab.fleet.switches)
        extra = {"isolation": self.proof.report(self.finals)} if self.proof else {}
        if self.vm:
            extra["vm"] = self.vm_report()
            extra["negative_control"] = self.control
        return {
            "ok": not self.checks.violations,
            "nodes": rows,
            "service_vlan": self.settings.service_vlan,
            "step_mean_seconds": steps,
            "spawn_seconds": round(self.spawn_seconds, 2),
            "terminate_seconds": round(self.terminate_seconds, 2),
            "switch_commits": commits,
            "netconf_step_checks": self.step_reads,
            "checks": self.checks.results,
            "violations": self.checks.violations,
            **extra,
        }

    def vm_report(self) -> dict[str, object]:
        """Boot timings per machine as their consoles showed them, and the agent's
        speeds as it logged them there (task taken to task reported done)."""
        machines, speeds = {}, defaultdict(list)
        for node in self.lab.nodes:
            for run in agent_runs(node.vm.console_log.read_text(errors="replace")):
                speeds[run.kind].append(round(run.mb_per_s, 2))
            machines[node.name] = {
                "bmc": type(node.bmc).__name__,
                "boots": [boot.summary() for boot in node.vm.boots],
                **({"console_tail": self._tail(node)} if self.checks.violations else {}),
            }
        boots = [boot.summary() for node in self.lab.nodes for boot in node.vm.boots]

        def seconds(device: BootDevice, key: str) -> list[float]:
            return [b[key] for b in boots if b["device"] == device and b[key] is not None]

        def phase_means(device: BootDevice) -> dict[str, float]:
            phases = defaultdict(list)
            for boot in (b for b in boots if b["device"] == device):
                for name, value in boot["phases"].items():
                    phases[name].append(value)
            return {name: round(statistics.mean(values), 2) for name, values in phases.items()}

        checks = self.step_check_seconds
        return {
            **self.artifacts,
            "machines": machines,
            "phase_mean_seconds": {
                str(d): phase_means(d) for d in (BootDevice.PXE, BootDevice.DISK)
            },
            "step_checks": {  # NETCONF read, tap, settle and matrix after each step
                "count": len(checks),
                "total_seconds": round(sum(checks), 2),
                "mean_seconds": round(statistics.mean(checks), 2) if checks else None,
            },
            "firmware_to_agent_seconds": seconds(BootDevice.PXE, "to_agent_seconds"),
            "disk_boot_to_tenant_dhcp_seconds": seconds(BootDevice.DISK, "to_address_seconds"),
            "deploy_mb_per_s": speeds["deploy"],
            "erase_mb_per_s": speeds["erase"],
            "goal_seconds": VM_GOAL_SECONDS,
            "accelerator": "tcg",
            "machine_probes": f"ARP ({VM_PROBE_TIMEOUT:g}s) to every address a machine may hold; "
            "`ping -c1 -W1` from the tenant OS's serial console to every other address",
            "firmware": "SeaBIOS + iPXE ROM of virtio-net-pci (BIOS network boot)",
        }

    def _tail(self, node: LabNode) -> str:
        log = node.vm.console_log
        return log.read_text(errors="replace")[-CONSOLE_TAIL:] if log.exists() else ""

    def run(self) -> dict[str, object]:
        self.setup()
        with self.controller():
            names = self.spawn_all()
            self.verify_active()
            if self.vm:
                self.negative_control()
            self.terminate_all(names)
            self.verify_terminated()
        return self.report(names)

    def close(self) -> None:
        try:
            for reader in self._readers.values():
                reader.close()
            self.lab.stop()
        finally:
            if self.plane is not None:
                self.plane.close()
            self.db.engine.dispose()


def run_demo(
    nodes: int = 4,
    progress: Progress = print,
    commit_latency: float = 0.3,
    keep: Path | None = None,
    netns: bool = False,
    vm: bool = False,
) -> dict[str, object]:
    """Run the demo in a temporary directory (or `keep`) and return its report.

    `netns` needs root (checked before anything is made): see the module docstring.
    """
    if netns or vm:
        require_root()
    with tempfile.TemporaryDirectory(prefix="metalnet-demo-") as tmp:
        workdir = keep or Path(tmp)
        demo = Demo(nodes, workdir, progress, commit_latency, netns, vm)
        try:
            started = time.monotonic()
            report = demo.run()
            report["total_seconds"] = round(time.monotonic() - started, 2)
            if vm:
                report["vm"]["goal_met"] = report["total_seconds"] < VM_GOAL_SECONDS
            return report
        finally:
            demo.close()
