"""Validators for everything a user types that may reach a switch, a BMC or dnsmasq.

One place, used by the CLI, the API and the lifecycle alike: a value that passes
here is safe to render into switch or DHCP configuration.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from metalnet.errors import InputError

NAME_RE = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,62})")
_HEX2 = "([0-9a-f]{2})"
_MAC_FORMS = (
    re.compile(":".join([_HEX2] * 6)),
    re.compile("-".join([_HEX2] * 6)),
    re.compile(r"\.".join([_HEX2 * 2] * 3)),
)
SHA256_RE = re.compile(r"[0-9a-f]{64}")

# Every switch port that is not configured otherwise is in VLAN 1 (IEEE 802.1Q's
# default PVID; Junos calls it `default` and puts ports without `members` in it), so
# VLAN 1 can never isolate anything: no service, parking or project VLAN may be 1.
DEFAULT_VLAN = 1


def check_name(value: str, what: str = "name") -> str:
    """Names of projects, networks, switches, nodes: lower-case letters, digits, . _ -, ≤ 63."""
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        raise InputError(
            f"invalid {what} {value!r}: use 1-63 characters a-z 0-9 . _ - starting with a letter "
            "or digit"
        )
    return value


def normalize_mac(value: str) -> str:
    """Return the MAC in lower-case colon form; refuse malformed, zero, broadcast, multicast."""
    text = value.strip().lower() if isinstance(value, str) else ""
    matches = (form.fullmatch(text) for form in _MAC_FORMS)
    match = next((m for m in matches if m), None)
    if match is None:
        raise InputError(
            f"invalid MAC {value!r}: "
            "expected aa:bb:cc:dd:ee:ff, AA-BB-CC-DD-EE-FF or aabb.ccdd.eeff"
        )
    octets = match.groups()
    mac = ":".join(octets)
    if mac == "00:00:00:00:00:00":
        raise InputError(f"invalid MAC {value!r}: all-zero address")
    if mac == "ff:ff:ff:ff:ff:ff":
        raise InputError(f"invalid MAC {value!r}: broadcast address")
    if int(octets[0], 16) & 1:
        raise InputError(f"invalid MAC {value!r}: multicast address (first octet is odd)")
    return mac


def check_vlan(value: object, what: str = "VLAN") -> int:
    """A VLAN id 1-4094, given as an int or a decimal string."""
    if isinstance(value, bool):
        raise InputError(f"invalid {what} {value!r}: not a number")
    if isinstance(value, str):
        if not re.fullmatch(r"[0-9]{1,5}", value.strip()):
            raise InputError(f"invalid {what} {value!r}: not a number")
        value = int(value)
    if not isinstance(value, int):
        raise InputError(f"invalid {what} {value!r}: not a number")
    if not 1 <= value <= 4094:
        raise InputError(f"invalid {what} {value}: must be 1-4094")
    return value


def check_cidr(value: str) -> ipaddress.IPv4Network:
    """An IPv4 network with no host bits set and room for at least two hosts."""
    text = value.strip() if isinstance(value, str) else ""
    try:
        loose = ipaddress.IPv4Network(text, strict=False)
    except ValueError:
        raise InputError(f"invalid CIDR {value!r}: not an IPv4 network like 10.20.0.0/24") from None
    network = loose
    if loose.with_prefixlen != text and ipaddress.IPv4Interface(text).ip != loose.network_address:
        raise InputError(f"invalid CIDR {value!r}: host bits set (did you mean {loose}?)")
    if network.prefixlen > 30:
        raise InputError(f"invalid CIDR {value!r}: /{network.prefixlen} leaves no room for hosts")
    return network


def check_sha256(value: str) -> str:
    """A sha256 digest as 64 hex characters, stored lower-case."""
    text = value.strip().lower() if isinstance(value, str) else ""
    if not SHA256_RE.fullmatch(text):
        raise InputError(f"invalid sha256 {value!r}: expected 64 hexadecimal characters")
    return text


def is_digits(text: str) -> bool:
    """Whether `text` is a whole number in ASCII digits: the one test of a number typed
    as text. `str.isdigit()` alone also accepts superscripts and other scripts' digits
    ("¹" fails in int(), "٣" reads as 3), so a token id of "¹" once answered HTTP 500."""
    return text.isascii() and text.isdigit()


def check_host_port(value: str, what: str = "address") -> tuple[str, int]:
    """`HOST:PORT` with a hostname or IPv4 address and a port 1-65535."""
    host, sep, port = value.rpartition(":") if isinstance(value, str) else ("", "", "")
    if not sep or not re.fullmatch(r"[A-Za-z0-9.-]{1,253}", host) or not is_digits(port):
        raise InputError(f"invalid {what} {value!r}: expected HOST:PORT, e.g. 192.0.2.10:830")
    if not 1 <= int(port) <= 65535:
        raise InputError(f"invalid {what} {value!r}: port must be 1-65535")
    return host, int(port)


def check_listen(value: str) -> tuple[str, int]:
    """`HOST:PORT` to listen on; port 0 lets the system pick a free one."""
    host, sep, port = value.rpartition(":") if isinstance(value, str) else ("", "", "")
    host = host.strip("[]")
    if not sep or not host or not is_digits(port) or int(port) > 65535:
        raise InputError(f"invalid listen address {value!r}: expected HOST:PORT, PORT 0-65535")
    return host, int(port)


@dataclass(frozen=True)
class ImagePolicy:
    """Where images may be fetched from: the one rule against using image downloads to
    reach anything else on the service network (server-side request forgery).

    `allow` holds HOST, HOST:PORT or CIDR entries (config `image_allow`, plus the host
    of `image_server`); `deny` holds HOST:PORT endpoints that are never fetched from,
    whatever `allow` says: the controller's own listeners. The controller checks a URL
    when it is given, and the agent checks it again, with every redirect, before it
    connects. Refusals name the URL's host, never anything fetched.
    """

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()

    def check(self, url: str) -> str:
        """`url` if it is an http(s) URL to an allowed host; else InputError."""
        parts = urlsplit(url) if isinstance(url, str) else None
        if (
            parts is None
            or parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.username is not None
            or any(c.isspace() or not c.isprintable() for c in url)
            or len(url) > 1024
        ):
            raise InputError(f"invalid image URL {url!r}: expected http(s)://HOST/PATH")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise InputError(f"invalid image URL {url!r}: bad port") from None
        host = parts.hostname.lower()
        if self.denies(host, port):
            raise InputError(f"image URL {url!r} points at the controller itself")
        if not any(_entry_matches(entry, host, port) for entry in self.allow):
            raise InputError(
                f"image URL {url!r}: {host}:{port} is not an allowed image server "
                "(configuration keys image_server, image_allow)"
            )
        return url

    def denies(self, host: str, port: int) -> bool:
        """Whether HOST:PORT is one of the endpoints never fetched from."""
        return any(_entry_matches(entry, host, port, wildcard=True) for entry in self.deny)


def _entry_matches(entry: str, host: str, port: int, wildcard: bool = False) -> bool:
    """Whether an allow/deny entry (HOST, HOST:PORT or CIDR) covers host:port.

    With `wildcard`, an entry for 0.0.0.0 (a controller listening everywhere) covers
    every host on its port.
    """
    try:
        network = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        network = None
    if network is not None and "/" in entry:
        try:
            return ipaddress.ip_address(host) in network
        except ValueError:
            return False
    name, sep, entry_port = entry.rpartition(":") if ":" in entry else (entry, "", "")
    if sep and is_digits(entry_port) and int(entry_port) != port:
        return False
    name = name.lower().strip("[]")
    return name == host or (wildcard and name in ("0.0.0.0", "::"))


def check_image_entry(value: str) -> str:
    """An `image_allow` entry: HOST, HOST:PORT or an IP network in CIDR form."""
    text = value.strip().lower() if isinstance(value, str) else ""
    if "/" in text:
        try:
            ipaddress.ip_network(text, strict=True)
        except ValueError:
            raise InputError(f"invalid image_allow entry {value!r}: not a CIDR") from None
        return text
    host, sep, port = text.rpartition(":") if ":" in text else (text, "", "")
    if not re.fullmatch(r"[a-z0-9.-]{1,253}", host) or (sep and not is_digits(port)):
        raise InputError(f"invalid image_allow entry {value!r}: expected HOST, HOST:PORT or CIDR")
    return text
