"""Junk thrown at the load and read RPCs over a real session: always an `<rpc-error>`
worded like Junos, never a dropped session or the simulator's internal-error reply."""

from __future__ import annotations

from xml.sax.saxutils import escape

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ncclient.operations import RaiseMode, RPCError

from metalnet.sim.switch import SimSwitch
from metalnet.sim.switch.server import INTERNAL_ERROR

WORDS = [
    "interfaces", "vlans", "groups", "apply-groups", "interface-range", "member",
    "member-range", "to", "ge-0/0/1", "<*>", '"<ge-*>"', "unit", "0", "family",
    "ethernet-switching", "interface-mode", "port-mode", "trunk", "access", "vlan",
    "members", "v10", "vlan-id", "10", "native-vlan-id", "inactive:", "replace:",
    "delete:", "protect:", "disable", "{", "}", ";", "[", "]", '"', "#", "/*", "*/",
]  # fmt: skip
VERBS = ["set", "delete", "activate", "deactivate", "", "show"]
PRINTABLE = [chr(c) for c in range(32, 127)] + list("éß€\u00a0\t\n")
chars = st.text(st.sampled_from(PRINTABLE), max_size=6)
junk_text = st.lists(st.one_of(st.sampled_from(WORDS), chars), max_size=25).map(" ".join)
junk_set = st.lists(st.tuples(st.sampled_from(VERBS), junk_text).map(" ".join), max_size=5).map(
    "\n".join
)
TAGS = ["configuration", "interfaces", "interface", "name", "unit", "vlan", "members",
        "vlans", "groups", "apply-groups", "interface-range", "member-range", "x"]  # fmt: skip
ATTRS = ['', ' inactive="inactive"', ' active="active"', ' operation="delete"',
         ' operation="bogus"', ' replace="replace"', ' delete="delete"']  # fmt: skip


@st.composite
def junk_xml(draw: st.DrawFn, depth: int = 0) -> str:
    tag = draw(st.sampled_from(TAGS))
    attr = draw(st.sampled_from(ATTRS))
    if depth > 3 or draw(st.booleans()):
        return f"<{tag}{attr}>{escape(draw(chars))}</{tag}>"
    children = draw(st.lists(junk_xml(depth + 1), max_size=3))
    return f"<{tag}{attr}>{''.join(children)}</{tag}>"


class Session:
    """Holds the ncclient manager out of hypothesis's sight (it cannot print one)."""

    def __init__(self, nc) -> None:
        self.nc = nc

    def __repr__(self) -> str:
        return "Session()"


@pytest.fixture(scope="module")
def session():
    from ncclient import manager

    with SimSwitch.running(ports=4) as sw:
        nc = manager.connect(
            host=sw.host, port=sw.port, username="admin", password="admin",
            device_params={"name": "junos"}, hostkey_verify=False,
            look_for_keys=False, allow_agent=False, timeout=10,
        )  # fmt: skip
        nc.raise_mode = RaiseMode.ERRORS
        yield Session(nc)
        nc.close_session()


def _answered(call) -> None:
    try:
        call()
    except RPCError as error:
        assert INTERNAL_ERROR not in str(error)


QUICK = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@QUICK
@given(junk=junk_text, action=st.sampled_from(["merge", "replace", "override"]))
def test_junk_text_loads(session: Session, junk: str, action: str) -> None:
    session = session.nc
    _answered(lambda: session.load_configuration(format="text", action=action, config=junk))
    _answered(lambda: session.rpc("<commit-configuration><check/></commit-configuration>"))
    session.rpc("<discard-changes/>")
    assert session.connected


@QUICK
@given(junk=junk_set)
def test_junk_set_loads(session: Session, junk: str) -> None:
    session = session.nc
    _answered(lambda: session.load_configuration(action="set", config=junk))
    _answered(lambda: session.rpc('<get-configuration inherit="inherit" format="set"/>'))
    session.rpc("<discard-changes/>")
    assert session.connected


@QUICK
@given(junk=junk_xml())
def test_junk_xml_loads_and_filters(session: Session, junk: str) -> None:
    session = session.nc
    config = f"<configuration>{junk}</configuration>"
    _answered(lambda: session.rpc(f"<load-configuration>{config}</load-configuration>"))
    _answered(lambda: session.rpc(f"<get-configuration>{config}</get-configuration>"))
    _answered(
        lambda: session.rpc(
            f"<edit-config><target><candidate/></target><config>{config}</config></edit-config>"
        )
    )
    _answered(
        lambda: session.rpc(
            f"<get-interface-information><interface-name>{escape(junk[:20])}</interface-name></get-interface-information>"
        )
    )
    session.rpc("<discard-changes/>")
    assert session.connected
