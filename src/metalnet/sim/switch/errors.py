"""NETCONF `<rpc-error>` values as Junos words them.

Handlers raise `RpcFailure`; the session turns it into `<rpc-error>` elements so
clients (ncclient, PyEZ) see the same tags and messages a Junos switch sends.

Junos frames the text of `<error-message>` with newlines on the wire
(`<error-message>\nconfiguration database modified\n</error-message>`: the
captured replies in Ansible junipernetworks.junos issue 404, Juniper
ansible-junos-stdlib issue 578 and PyEZ's tests/unit/test_exception.py), and
ncclient passes a single error's message on unstripped: clients must strip.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

CHECKOUT_FAILED = "configuration check-out failed"


@dataclass(frozen=True)
class ErrorSpec:
    """One `<rpc-error>`: Junos reports most failures as protocol/operation-failed."""

    message: str
    tag: str = "operation-failed"
    type: str = "protocol"
    severity: str = "error"
    path: str | None = None
    bad_element: str | None = None
    session_id: int | None = None

    def element(self) -> etree._Element:
        """Render as an unqualified `<rpc-error>` (it inherits the reply's namespace)."""
        err = etree.Element("rpc-error")
        etree.SubElement(err, "error-type").text = self.type
        etree.SubElement(err, "error-tag").text = self.tag
        etree.SubElement(err, "error-severity").text = self.severity
        if self.path:
            etree.SubElement(err, "error-path").text = self.path
        etree.SubElement(err, "error-message").text = f"\n{self.message}\n"
        if self.bad_element is not None or self.session_id is not None:
            info = etree.SubElement(err, "error-info")
            if self.bad_element is not None:
                etree.SubElement(info, "bad-element").text = self.bad_element
            if self.session_id is not None:
                etree.SubElement(info, "session-id").text = str(self.session_id)
        return err


class RpcFailure(Exception):
    """An RPC failed; carries every `<rpc-error>` the reply should hold."""

    def __init__(self, *errors: ErrorSpec) -> None:
        self.errors = errors
        super().__init__("; ".join(e.message for e in errors))


def syntax_error(bad: str, message: str = "syntax error") -> RpcFailure:
    """What Junos answers to configuration text or an RPC it cannot parse."""
    return RpcFailure(ErrorSpec(message, bad_element=bad))
