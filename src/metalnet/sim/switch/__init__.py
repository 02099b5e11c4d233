"""A Junos EX/QFX switch simulator speaking NETCONF over SSH.

`SimSwitch` is one switch; `SimFleet` runs many on one background event loop.
`device.py` holds the test API, `rpcs.py` the RPCs answered, `datastore.py` the
candidate/committed databases, `server.py` the SSH transport.

Modelled as Junos does it:
- NETCONF hello (Junos capabilities, base:1.1 optional), end-of-message and
  chunked framing, message-id and other rpc attributes echoed, replies with no
  XML declaration, errors as `<rpc-error>` worded like Junos.
- Shared candidate + committed configuration, 50-deep rollback history;
  `load-configuration` (text, xml, set; merge, replace with `replace:` tags /
  `replace="replace"`, override, update ≈ override, `rollback="N"`),
  `get-configuration` (candidate/committed, xml/text/set, subtree filter,
  `compare="rollback"`), RFC 6241 lock/unlock/get-config/edit-config
  (merge/replace/none, operation attributes)/validate/commit/discard-changes,
  `commit-configuration` (check, confirmed + confirm-timeout, log),
  get-software-information, `show version`, get-chassis-inventory,
  close-session, kill-session.
- Merge adds VLAN members (a leaf-list) instead of replacing them.
- Commit check-out: interfaces must exist, VLAN members must be defined (name or
  vlan-id), vlan-id 1-4094 and unique, an access port has one VLAN; a failed
  commit changes nothing ("configuration check-out failed").
- Exclusive lock: others cannot lock, load, commit or discard; the holder's
  uncommitted changes are discarded when its session ends.
- Commit latency (awaited; the session is silent meanwhile) and commit confirmed
  with automatic rollback.

Not modelled: the full Junos schema (any well-formed statement loads; only the
checks above run), private/dynamic/ephemeral databases (`open-configuration`),
"configuration database modified" when locking over another user's uncommitted
changes, `commit at`, `commit synchronize` across REs (accepted, no effect),
interface ranges, groups/apply-groups, inactive:/protect: tags, JSON format,
operational state (`get-interface-information`, LLDP, MAC tables). Unlike Junos,
configuring an absent interface fails the commit (Junos accepts it), so an
inventory typo shows up at once.
"""

from metalnet.sim.switch.device import SimSwitch
from metalnet.sim.switch.fleet import SimFleet

__all__ = ["SimFleet", "SimSwitch"]
