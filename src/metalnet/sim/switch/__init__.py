"""A Junos EX/QFX switch simulator speaking NETCONF over SSH.

`SimSwitch` is one switch; `SimFleet` runs many on one background event loop.
`device.py` holds the test API, `rpcs.py` the RPCs answered, `datastore.py` the
candidate/committed databases, `server.py` the SSH transport.

Modelled as Junos does it (each module names its sources):
- NETCONF hello offering base:1.0 (base:1.1 on request), end-of-message and
  chunked framing, message-id and other rpc attributes echoed, replies with no
  XML declaration, errors as `<rpc-error>` worded like Junos; any bad input gets
  an `<rpc-error>`, never a dropped session.
- Two Layer 2 dialects (`dialect.py`): ELS (EX4300) and the older software
  (EX4200), each refusing the other's statements as syntax errors.
- Shared candidate + committed configuration, 50-deep rollback history; lock
  refused over uncommitted changes ("configuration database modified"), unlock
  and session end discard them; private copies (`open-configuration`,
  `close-configuration`) whose commit merges only their own changes.
- `load-configuration` (text, xml, set incl. activate/deactivate; merge, replace
  with `replace:`/`replace="replace"`, override, update ≈ override, `rollback="N"`;
  "statement not found" warnings for deletes of absent statements),
  `get-configuration` (candidate/committed, xml/text/set, subtree filter,
  `inherit="inherit"`, `compare="rollback"`), RFC 6241 lock/unlock/get-config/
  edit-config/validate/commit/discard-changes, `commit-configuration` (check,
  confirmed + confirm-timeout, log), get-software-information, `show version`,
  get-chassis-inventory, get-interface-information, close-session, kill-session.
- `inactive:` statements, `groups`/`apply-groups` (wildcards included) and
  `interface-range` are kept as written and resolved for commit checks and the
  port→VLAN view (`inherit.py`).
- Merge adds VLAN members (a leaf-list) instead of replacing them; factory ports
  name no VLAN and are in `default` (id 1).
- Commit check-out: VLAN members must be defined (name or vlan-id), vlan-id
  1-4094 and unique, an access port has one VLAN; a failed commit changes nothing
  ("configuration check-out failed"). Configuration for absent interfaces commits.
- Commit latency (awaited; the session is silent meanwhile), optional commit
  warnings, commit confirmed with automatic rollback, also when the session that
  made it ends.

Not modelled: the full Junos schema (any well-formed statement of the right
dialect loads; only the checks above run), dynamic/ephemeral databases,
`commit at`, `commit synchronize` across REs (accepted, no effect), Virtual
Chassis members beyond FPC 0, JSON format, LLDP and MAC tables.
"""

from metalnet.sim.switch.device import SimSwitch
from metalnet.sim.switch.fleet import SimFleet

__all__ = ["SimFleet", "SimSwitch"]
