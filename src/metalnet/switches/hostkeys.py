"""Switch SSH host keys: recorded once, checked before every login.

Whoever answers on a switch's address receives its password at login, so a session
goes on only when the switch presents the host key the inventory recorded for it.
The rule (`decide`) has three outcomes: the recorded key is presented (accept); no
key is recorded yet (learn it: trust on first use, audited); another key is presented
(refuse, naming the switch and both fingerprints, until an admin runs
`metalnet switch rekey`).

Fingerprints are MD5 over the public key blob, written `MD5:aa:bb:...`, because that
is what ncclient hands its `unknown_host_cb` before it authenticates
(ncclient/transport/ssh.py: `_colonify(hexlify(key.get_fingerprint()))`, paramiko's
`PKey.get_fingerprint` being MD5) and what `ssh-keygen -l -E md5` prints. OpenSSH's
SHA256 fingerprints cannot be compared with that, so the full key line
(`ssh-keyscan -p PORT HOST`) is accepted as well and fingerprinted here.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import logging
import re
import socket

from sqlalchemy import select, update

from metalnet import audit
from metalnet.db.engine import Database
from metalnet.db.models import Switch
from metalnet.errors import InputError
from metalnet.switches.base import SwitchError

log = logging.getLogger(__name__)

_MD5_HEX = re.compile(r"(?:md5:)?((?:[0-9a-f]{2}:){15}[0-9a-f]{2})")
_KEY_TYPE = re.compile(r"(?:ssh-|ecdsa-|sk-)[a-z0-9@.-]+")


class Verdict(enum.Enum):
    ACCEPT = "accept"
    LEARN = "learn"
    REFUSE = "refuse"


def decide(recorded: str | None, presented: str) -> Verdict:
    """The host key rule: the recorded key, or the first one seen, and nothing else."""
    if recorded is None:
        return Verdict.LEARN
    return Verdict.ACCEPT if recorded == presented else Verdict.REFUSE


def fingerprint(blob: bytes) -> str:
    """`MD5:aa:bb:...` of a public key blob (the SSH wire encoding of the key)."""
    digest = hashlib.md5(blob, usedforsecurity=False).hexdigest()
    return "MD5:" + ":".join(digest[i : i + 2] for i in range(0, 32, 2))


def normalize(text: str) -> str:
    """A host key as the operator gives it, as the canonical fingerprint.

    Accepted: an MD5 fingerprint (`aa:bb:...`, optionally `MD5:`), or a public key line
    as ssh-keyscan or known_hosts write it (`[host] ssh-ed25519 AAAA... [comment]`).
    """
    value = text.strip()
    if match := _MD5_HEX.fullmatch(value.lower()):
        return "MD5:" + match.group(1)
    words = value.split()
    for i, word in enumerate(words[:-1]):
        if _KEY_TYPE.fullmatch(word):
            try:
                return fingerprint(base64.b64decode(words[i + 1], validate=True))
            except binascii.Error:
                break
    hint = (
        "SHA256 fingerprints cannot be checked before login over NETCONF; give the key line "
        "(`ssh-keyscan -p PORT HOST`) or `ssh-keygen -l -E md5` output"
        if value.upper().startswith("SHA256:")
        else "expected an MD5 fingerprint aa:bb:..:ff or a key line like 'ssh-ed25519 AAAA...'"
    )
    raise InputError(f"invalid host key {text!r}: {hint}")


def scan(host: str, port: int, timeout: float) -> str:
    """The fingerprint of the host key `host:port` presents, without logging in.

    paramiko negotiates the host key type here exactly as it does under ncclient
    (same library, same preference order), so the key learned is the one sessions see.
    """
    import paramiko

    try:
        sock = socket.create_connection((host, port), timeout)
    except OSError as exc:
        raise SwitchError(f"{host}:{port}", f"cannot read its host key: {exc}") from None
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=timeout)
        return fingerprint(transport.get_remote_server_key().asbytes())
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise SwitchError(f"{host}:{port}", f"cannot read its host key: {exc}") from None
    finally:
        transport.close()


class HostKeyMismatch(SwitchError):
    """The switch presented another host key than the one recorded for it."""

    def __init__(self, switch: str, recorded: str, presented: str) -> None:
        super().__init__(
            switch,
            f"host key mismatch: recorded {recorded}, presented {presented}; refusing to "
            f"log in (if the switch was really re-keyed: metalnet switch rekey {switch})",
        )
        self.recorded, self.presented = recorded, presented


class HostKeyCheck:
    """ncclient's `unknown_host_cb` for one stored switch: `decide` against the inventory.

    A refusal returns False (ncclient then ends the connection before any password is
    sent) and is kept in `refusal`, so the caller can raise it instead of a bare
    "unknown host key". A first key is recorded only where none is yet (compare and
    set), so two first sessions cannot record two different keys.
    """

    def __init__(self, db: Database, switch: str) -> None:
        self.db = db
        self.switch = switch
        self.refusal: HostKeyMismatch | None = None

    def __call__(self, _host: str, presented_hex: str) -> bool:
        presented = "MD5:" + presented_hex.lower()
        with self.db.session() as session:
            recorded = session.scalar(select(Switch.host_key).where(Switch.name == self.switch))
            verdict = decide(recorded, presented)
            if verdict is Verdict.LEARN:
                learned = session.execute(
                    update(Switch)
                    .where(Switch.name == self.switch, Switch.host_key.is_(None))
                    .values(host_key=presented)
                ).rowcount
                if not learned:  # another session recorded one first: judge against it
                    recorded = session.scalar(
                        select(Switch.host_key).where(Switch.name == self.switch)
                    )
                    verdict = decide(recorded, presented)
        if verdict is Verdict.LEARN:
            log.warning("switch %s: host key %s recorded on first use", self.switch, presented)
            audit.record(
                self.db, "metalnet", "switch host-key learned", self.switch, True, presented
            )
        if verdict is Verdict.REFUSE:
            self.refusal = HostKeyMismatch(self.switch, recorded or "-", presented)
            log.error("%s", self.refusal)
            return False
        self.refusal = None
        return True
