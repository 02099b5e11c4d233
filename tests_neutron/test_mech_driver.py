"""The metalnet mechanism driver inside Neutron's real ML2 plugin (in-process, SQLite),
against a real `metalnet serve` and simulated Junos switches read back over NETCONF.

The test case is Neutron's own ML2 unit-test base (`Ml2PluginV2TestCase`), as
third-party ML2 drivers test themselves; its database is a SQLite file instead of the
shared in-memory one so that the driver's worker threads (which complete provisioning
blocks, as a Neutron server's do) each get their own connection.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar

import pytest
import sqlalchemy
from neutron.tests.unit.plugins.ml2 import test_plugin
from neutron_lib import context as n_context
from neutron_lib import fixture as lib_fixtures
from neutron_lib.api.definitions import portbindings
from neutron_lib.api.definitions import provider_net as pnet
from oslo_config import cfg

from metalnet.neutron import config
from tests_neutron.conftest import CHASSIS, REFUSAL

PHYSNET = "physnet1"  # Neutron's ML2 test base configures physnet1 with VLANs 1-100
SETTLE = 120.0  # deadline for metalnet to answer every pending call
BENCH = os.environ.get("METALNET_NEUTRON_BENCH")  # where to write measured times (JSON)


class FileSqlFixture(lib_fixtures.SqlFixture):
    """Neutron's SQL fixture over a SQLite file: one connection per thread, writers
    serialized by BEGIN IMMEDIATE (SQLAlchemy's documented pysqlite recipe)."""

    engines: dict[str, sqlalchemy.Engine] = {}  # noqa: RUF012 - one per file, kept across tests

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def _init_resources(self) -> None:
        if self.path not in self.engines:
            engine = sqlalchemy.create_engine(
                f"sqlite:///{self.path}",
                connect_args={"timeout": 60, "check_same_thread": False},
            )

            @sqlalchemy.event.listens_for(engine, "connect")
            def _autocommit_driver(dbapi_conn, _record) -> None:
                dbapi_conn.isolation_level = None

            @sqlalchemy.event.listens_for(engine, "begin")
            def _begin_immediate(conn) -> None:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

            self._generate_schema(engine)
            self.engines[self.path] = engine
        self.engine = self.engines[self.path]


@pytest.fixture(scope="class")
def _world(request, metalnet, tmp_path_factory) -> None:
    request.cls.metalnet = metalnet
    request.cls.db_path = str(tmp_path_factory.mktemp("neutron") / "neutron.db")


@pytest.mark.usefixtures("_world")
class TestMetalnetMechanismDriver(test_plugin.Ml2PluginV2TestCase):
    _mechanism_drivers: ClassVar[list[str]] = ["metalnet"]

    def _setup_database_fixtures(self) -> None:
        fixture = FileSqlFixture(self.db_path)
        self.useFixture(fixture)
        self.engine = fixture.engine

    def setUp(self) -> None:
        config.register()
        for key, value in (
            ("url", self.metalnet.url),
            ("token", self.metalnet.token),
            ("physical_networks", [PHYSNET]),
            ("switch_lookup", "switch_info"),
        ):
            cfg.CONF.set_override(key, value, group=config.GROUP)
        super().setUp()
        self.mech = self.plugin.mechanism_manager.mech_drivers["metalnet"].obj
        self.addCleanup(self.mech.drain, SETTLE)

    # Helpers ----------------------------------------------------------------------------

    def _vlan_net(self, vlan: int, physnet: str = PHYSNET) -> str:
        net = self._make_network(
            self.fmt,
            f"net{vlan}",
            True,
            as_admin=True,
            arg_list=(pnet.NETWORK_TYPE, pnet.PHYSICAL_NETWORK, pnet.SEGMENTATION_ID),
            **{
                pnet.NETWORK_TYPE: "vlan",
                pnet.PHYSICAL_NETWORK: physnet,
                pnet.SEGMENTATION_ID: vlan,
            },
        )
        return net["network"]["id"]

    def _bm_port(self, net: str, switch: str, interface: str, key: str = "switch_info") -> str:
        value = switch if key == "switch_info" else CHASSIS[switch]
        link = {"port_id": interface, key: value}
        response = self._create_port(
            self.fmt,
            net,
            is_service=True,  # Neutron's policy lets only services set binding:profile
            arg_list=(portbindings.VNIC_TYPE, portbindings.PROFILE),
            **{
                portbindings.VNIC_TYPE: portbindings.VNIC_BAREMETAL,
                portbindings.PROFILE: {"local_link_information": [link]},
            },
        )
        self._check_http_response(response)
        return self.deserialize(self.fmt, response)["port"]["id"]

    def _bind(self, port: str, host: str) -> dict:
        ctx = n_context.get_admin_context()
        return self.plugin.update_port(ctx, port, {"port": {portbindings.HOST_ID: host}})

    def _get(self, port: str) -> dict:
        return self.plugin.get_port(n_context.get_admin_context(), port)

    def _settled(self, port: str) -> dict:
        self.mech.drain(SETTLE)
        return self._get(port)

    # Tests ------------------------------------------------------------------------------

    def test_bind_move_rebind_unbind_delete(self) -> None:
        vlan = self.metalnet.device_vlan
        provisioning = self._vlan_net(21)
        port = self._bm_port(provisioning, "tor1", "ge-0/0/5")
        started = time.monotonic()
        bound = self._bind(port, "node-1")
        self.assertEqual(portbindings.VIF_TYPE_OTHER, bound[portbindings.VIF_TYPE])
        self.assertEqual("DOWN", bound["status"])  # until metalnet committed and read back
        self.assertEqual("ACTIVE", self._settled(port)["status"])
        _record("bind_to_active_one_port_s", time.monotonic() - started)
        self.assertEqual(21, vlan("tor1", "ge-0/0/5"))

        # Ironic moves the node to the tenant network: provisioning port deleted, tenant
        # port on the same link bound (chassis MAC lookup is exercised separately).
        self._delete("ports", port, as_admin=True)
        self.mech.drain(SETTLE)
        self.assertEqual(4000, vlan("tor1", "ge-0/0/5"))  # parked between owners
        tenant = self._bm_port(self._vlan_net(22), "tor1", "ge-0/0/5")
        self._bind(tenant, "node-1")
        self.assertEqual("ACTIVE", self._settled(tenant)["status"])
        self.assertEqual(22, vlan("tor1", "ge-0/0/5"))

        # A host change parks the port, then binds it again for the new host.
        self._bind(tenant, "node-2")
        self.assertEqual("ACTIVE", self._settled(tenant)["status"])
        log = self.metalnet.commits("tor1")
        self.assertEqual([4000, 22], [c["ports"][0]["vlan"] for c in log[-2:] if c["ok"]], log[-3:])

        # Unbind parks; delete of an unbound port changes nothing on the switch.
        unbound = self._bind(tenant, "")
        self.assertEqual(portbindings.VIF_TYPE_UNBOUND, unbound[portbindings.VIF_TYPE])
        self.mech.drain(SETTLE)
        self.assertEqual(4000, vlan("tor1", "ge-0/0/5"))
        self._delete("ports", tenant, as_admin=True)
        self.mech.drain(SETTLE)
        attached = self.metalnet.api("GET", "/v1/attachments").json()
        self.assertFalse([a for a in attached if a["port"] == "ge-0/0/5"], attached)

    def test_switch_found_by_chassis_mac(self) -> None:
        cfg.CONF.set_override("switch_lookup", "switch_id", group=config.GROUP)
        self.mech.lookup = "switch_id"
        port = self._bm_port(self._vlan_net(23), "tor2", "ge-0/0/6", key="switch_id")
        self._bind(port, "node-3")
        self.assertEqual("ACTIVE", self._settled(port)["status"])
        self.assertEqual(23, self.metalnet.device_vlan("tor2", "ge-0/0/6"))

    def test_ports_that_do_not_qualify_are_left_to_other_drivers(self) -> None:
        other = self._vlan_net(24, physnet="physnet2")  # not served by metalnet
        port = self._bm_port(other, "tor1", "ge-0/0/7")
        self.assertEqual(
            portbindings.VIF_TYPE_BINDING_FAILED, self._bind(port, "h")[portbindings.VIF_TYPE]
        )
        self.mech.drain(SETTLE)
        attached = self.metalnet.api("GET", "/v1/attachments").json()
        self.assertFalse([a for a in attached if a["port"] == "ge-0/0/7"], attached)

    def test_unknown_switch_fails_the_binding_with_metalnet_words(self) -> None:
        port = self._bm_port(self._vlan_net(25), "tor9", "ge-0/0/1")
        with self.assertLogs("metalnet.neutron.mech_driver", "ERROR") as logs:
            bound = self._bind(port, "node-9")
        self.assertEqual(portbindings.VIF_TYPE_BINDING_FAILED, bound[portbindings.VIF_TYPE])
        self.assertIn("no switch with name 'tor9'", "\n".join(logs.output))

    def test_refused_commit_leaves_the_port_in_error_with_the_switch_words(self) -> None:
        port = self._bm_port(self._vlan_net(26), "tor3", "ge-0/0/1")
        with self.assertLogs("metalnet.neutron.mech_driver", "ERROR") as logs:
            self._bind(port, "node-4")
            status = self._settled(port)["status"]
        self.assertEqual("ERROR", status)
        self.assertIn(REFUSAL, "\n".join(logs.output))

    def test_unreachable_switch_leaves_the_port_in_error(self) -> None:
        port = self._bm_port(self._vlan_net(27), "tor4", "ge-0/0/1")
        with self.assertLogs("metalnet.neutron.mech_driver", "ERROR") as logs:
            self._bind(port, "node-5")
            status = self._settled(port)["status"]
        self.assertEqual("ERROR", status)
        self.assertIn("switch tor4", "\n".join(logs.output))

    def test_a_burst_of_40_bindings_is_committed_as_about_one_commit_per_switch(self) -> None:
        """Bindings that reach metalnet while a switch is busy join its next commit.

        A Neutron server binds a fleet's ports in parallel API workers; here Neutron's
        SQLite serializes them (tenths of a second each), so the test holds both
        switches' configuration lock from another NETCONF session while it binds, the
        way an operator's exclusive session would, and releases it once all 40 are
        bound: metalnet's first commit then carries what arrived first, the next all
        the rest.
        """
        net = self._vlan_net(30)
        links = [(sw, f"ge-0/0/{i}") for sw in ("tor1", "tor2") for i in range(20, 40)]
        ports = [self._bm_port(net, sw, iface) for sw, iface in links]
        before = {sw: len(self.metalnet.commits(sw)) for sw in ("tor1", "tor2")}
        started = time.monotonic()
        with self.metalnet.held("tor1", "tor2"):
            with ThreadPoolExecutor(8) as pool:  # Ironic binds nodes concurrently
                bound = list(pool.map(lambda p: self._bind(p, f"node-{p}"), ports))
            _record("bind_phase_40_ports_s", time.monotonic() - started)
            self.assertEqual(
                ["DOWN"] * len(ports), [self._get(p)["status"] for p in ports]
            )  # nothing is ACTIVE before the switch committed it
            released = time.monotonic()
        self.assertEqual({portbindings.VIF_TYPE_OTHER}, {b[portbindings.VIF_TYPE] for b in bound})
        self.mech.drain(SETTLE)
        statuses = [self._get(p)["status"] for p in ports]
        _record("release_to_active_40_ports_s", time.monotonic() - released)
        _record("bind_to_active_40_ports_s", time.monotonic() - started)
        self.assertEqual(["ACTIVE"] * len(ports), statuses)
        commits = {
            sw: [c for c in self.metalnet.commits(sw)[before[sw] :] if c["ok"]]
            for sw in ("tor1", "tor2")
        }
        _record("burst_commits_per_switch", {sw: len(c) for sw, c in commits.items()})
        for sw, made in commits.items():
            self.assertEqual(20, sum(len(c["ports"]) for c in made))
            self.assertLessEqual(len(made), 3, (sw, [len(c["ports"]) for c in made]))
        for sw, iface in (links[0], links[-1]):
            self.assertEqual(30, self.metalnet.device_vlan(sw, iface))


def _record(key: str, value: object) -> None:
    """Measured numbers go to a JSON file (no timed assertions), when one is asked for."""
    print(f"{key}: {value}")
    if BENCH:
        path = Path(BENCH)
        data = json.loads(path.read_text()) if path.exists() else {}
        data[key] = value
        path.write_text(json.dumps(data, indent=1))
