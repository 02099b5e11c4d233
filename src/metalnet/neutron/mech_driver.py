"""The ML2 mechanism driver `metalnet`: bare-metal ports bound through metalnet's switch service.

How ML2 drives a mechanism driver, and how bare-metal drivers use it (facts from
neutron-lib's `plugins/ml2/api.py` docstrings and networking-generic-switch's
`generic_switch_mech.py`):

- `bind_port` runs outside any database transaction and should stay light: its
  result may be discarded if the port changed meanwhile. A driver binds by calling
  `context.set_binding(segment id, vif type, details)`; a port nobody binds ends up
  `binding_failed`. Bare-metal ports bind with VIF type `other` (no agent plugs them).
- A port stays DOWN until every provisioning block on it is completed
  (`neutron.db.provisioning_blocks`); completing the last one makes ML2 set it ACTIVE.
  A block is added at bind and completed once the switch was configured.
- `update_port_postcommit` / `delete_port_postcommit` run after the binding is
  committed, for every change of the port (status changes included), with
  `context.original` and `context.original_binding_levels` describing the port before.

What this driver does with that:

- Qualifying port: `binding:vnic_type` `baremetal`, exactly one
  `binding:profile.local_link_information` entry naming a switch metalnet knows (by
  `switch_info` or by chassis MAC `switch_id`, per `[metalnet] switch_lookup`), and a
  segment of type `vlan` on one of `[metalnet] physical_networks`. Anything else is
  left to other drivers. An unknown switch or an unreachable metalnet is logged with
  metalnet's words and the port is not bound.
- After the binding is committed, the switch port is attached for `neutron:<port id>`
  in the segment's VLAN (PUT /v1/attachments, which answers once the switch committed
  and read the port back); then the provisioning block is completed and the port turns
  ACTIVE. A refusal (isolation guard, switch commit, unreachable switch) leaves the port
  in status ERROR, never ACTIVE, with metalnet's words in the log.
- Unbind, delete and a host or link change end the attachment (DELETE): metalnet parks
  the port.
- The calls run on a thread pool so a burst of bindings reaches metalnet together and
  is committed as about one transaction per switch; calls for the same switch port are
  kept in order (a provisioning port's detach before the tenant port's attach).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from neutron.db import provisioning_blocks
from neutron_lib import constants as n_const
from neutron_lib import context as n_context
from neutron_lib.api.definitions import portbindings
from neutron_lib.callbacks import resources
from neutron_lib.plugins import directory
from neutron_lib.plugins.ml2 import api

from metalnet.neutron import config
from metalnet.neutron.client import Attachment, MetalnetClient, MetalnetFailed

LOG = logging.getLogger(__name__)

NAME = "metalnet"
ENTITY = "METALNET"  # the provisioning block this driver adds and completes
WORKERS = 64


class MetalnetMechanismDriver(api.MechanismDriver):
    """Binds bare-metal ports on VLAN segments of the configured physical networks."""

    def initialize(self) -> None:
        conf = config.register()
        group = conf[config.GROUP]
        if not group.url:
            raise ValueError("[metalnet] url is required")
        self.physnets = frozenset(group.physical_networks)
        self.lookup = group.switch_lookup
        self.client = MetalnetClient(group.url, config.token(conf), group.timeout)
        self._switches: dict[str, str] = {}
        self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="metalnet")
        self._order = _PerKey(self._pool)
        LOG.info("metalnet driver: %s for physical networks %s", group.url, sorted(self.physnets))

    @property
    def connectivity(self) -> str:
        """Layer 2: a switch port in a VLAN, with or without an IP address on the port."""
        return portbindings.CONNECTIVITY_L2

    # Binding ---------------------------------------------------------------------------

    def bind_port(self, context: api.PortContext) -> None:
        port = context.current
        link = _link(port)
        if link is None:
            return
        segment = next((s for s in context.segments_to_bind if self._serves(s)), None)
        if segment is None:
            return
        try:
            self._switch(link)
        except MetalnetFailed as exc:
            LOG.error("metalnet cannot bind port %s (link %s): %s", port["id"], link, exc)
            return
        context.set_binding(segment[api.ID], portbindings.VIF_TYPE_OTHER, {})
        provisioning_blocks.add_provisioning_component(
            context.plugin_context, port["id"], resources.PORT, ENTITY
        )

    def _serves(self, segment: Mapping[str, Any]) -> bool:
        return (
            segment.get(api.NETWORK_TYPE) == n_const.TYPE_VLAN
            and segment.get(api.PHYSICAL_NETWORK) in self.physnets
            and segment.get(api.SEGMENTATION_ID) is not None
        )

    def _switch(self, link: Mapping[str, Any]) -> str:
        """metalnet's name for the switch a link names; looked up once, then cached."""
        key = str(link.get(self.lookup) or "")
        if not key:
            raise MetalnetFailed(f"the link information has no {self.lookup}")
        if key not in self._switches:
            if self.lookup == "switch_id":
                self._switches[key] = self.client.find_switch(chassis_mac=key)
            else:
                self._switches[key] = self.client.find_switch(name=key)
        return self._switches[key]

    # After the binding is committed -----------------------------------------------------

    def update_port_postcommit(self, context: api.PortContext) -> None:
        before = self._attachment(
            context.original, context.original_binding_levels, context.original_bottom_bound_segment
        )
        after = self._attachment(
            context.current, context.binding_levels, context.bottom_bound_segment
        )
        if (before, context.original_host) == (after, context.host):
            return  # a status change, or nothing of ours
        if before is not None:
            self._submit(before, self._detach)
        if after is not None:
            self._submit(after, lambda a: self._attach(context.current["id"], a))

    def delete_port_postcommit(self, context: api.PortContext) -> None:
        gone = self._attachment(
            context.current, context.binding_levels, context.bottom_bound_segment
        )
        if gone is not None:
            self._submit(gone, self._detach)

    def _attachment(
        self,
        port: Mapping[str, Any] | None,
        levels: list[Mapping[str, Any]] | None,
        segment: Mapping[str, Any] | None,
    ) -> Attachment | None:
        """The attachment a port bound by this driver stands for, or None."""
        if not port or not levels or levels[-1].get(api.BOUND_DRIVER) != NAME or not segment:
            return None
        link = _link(port)
        if link is None:
            return None
        try:
            switch = self._switch(link)
        except MetalnetFailed as exc:
            LOG.error("metalnet: port %s (link %s): %s", port["id"], link, exc)
            return None
        vlan = int(segment[api.SEGMENTATION_ID])
        return Attachment(switch, str(link["port_id"]), vlan, f"neutron:{port['id']}")

    def _submit(self, attachment: Attachment, work: Callable[[Attachment], None]) -> Future:
        return self._order.submit((attachment.switch, attachment.port), lambda: work(attachment))

    def _attach(self, port_id: str, attachment: Attachment) -> None:
        """Attach, then let the port turn ACTIVE; on failure set it ERROR with the reason."""
        ctx = n_context.get_admin_context()
        try:
            answer = self.client.attach(attachment)
        except MetalnetFailed as exc:
            LOG.error(
                "metalnet could not put port %s on switch %s port %s in VLAN %d: %s",
                port_id,
                attachment.switch,
                attachment.port,
                attachment.vlan,
                exc,
            )
            directory.get_plugin().update_port_status(ctx, port_id, n_const.PORT_STATUS_ERROR)
            return
        LOG.info(
            "metalnet: port %s on switch %s port %s committed and read back in VLAN %d "
            "(%s s, batch of %s)",
            port_id,
            attachment.switch,
            attachment.port,
            attachment.vlan,
            answer.get("seconds"),
            answer.get("batch_size"),
        )
        provisioning_blocks.provisioning_complete(ctx, port_id, resources.PORT, ENTITY)

    def _detach(self, attachment: Attachment) -> None:
        try:
            self.client.detach(attachment)
        except MetalnetFailed as exc:
            LOG.error(
                "metalnet could not park switch %s port %s for %s: %s",
                attachment.switch,
                attachment.port,
                attachment.owner,
                exc,
            )
            return
        LOG.info("metalnet: switch %s port %s parked", attachment.switch, attachment.port)

    def drain(self, timeout: float) -> None:
        """Wait until every call submitted so far has ended (for shutdown and tests)."""
        self._order.drain(timeout)


def _link(port: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The one local link of a bare-metal port, or None when the port does not qualify."""
    if port.get(portbindings.VNIC_TYPE) != portbindings.VNIC_BAREMETAL:
        return None
    profile = port.get(portbindings.PROFILE) or {}
    links = profile.get("local_link_information") or []
    if len(links) != 1:
        if links:
            LOG.warning(
                "metalnet: port %s has %d links; bonds are not bound", port["id"], len(links)
            )
        return None
    link = links[0]
    return link if isinstance(link, Mapping) and link.get("port_id") else None


class _PerKey:
    """Runs work on a pool, keeping the order of the calls made for the same key."""

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self.pool = pool
        self._lock = threading.Lock()
        self._last: dict[object, Future] = {}

    def submit(self, key: object, work: Callable[[], None]) -> Future:
        with self._lock:
            before = self._last.get(key)
            future = self.pool.submit(self._after, before, work)
            self._last[key] = future
        future.add_done_callback(lambda f: self._forget(key, f))
        return future

    @staticmethod
    def _after(before: Future | None, work: Callable[[], None]) -> None:
        if before is not None:
            before.exception()  # wait; its failure was logged by itself
        try:
            work()
        except Exception:
            LOG.exception("metalnet: a port call failed")

    def _forget(self, key: object, future: Future) -> None:
        with self._lock:
            if self._last.get(key) is future:
                del self._last[key]

    def drain(self, timeout: float) -> None:
        with self._lock:
            pending = list(self._last.values())
        for future in pending:
            future.exception(timeout)
