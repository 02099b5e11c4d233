"""What the namespace tests need: the reason they cannot run here, and `ip`'s view of a lab.

CI sets METALNET_REQUIRE_NETNS=1 and runs as root: there a missing requirement is
an error at collection, never a silent skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

NEEDED = {
    "ip": "iproute2",
    "dnsmasq": "dnsmasq",
    "busybox": "busybox",
    "ping": "iputils-ping",
    "timeout": "coreutils",
}


def why_unavailable() -> str | None:
    """Why namespace tests cannot run on this machine, or None when they can."""
    if os.geteuid() != 0:
        return "needs root: network namespaces and bridges (CI runs these as root)"
    path = "/usr/local/sbin:/usr/sbin:/sbin:/usr/local/bin:/usr/bin:/bin"
    missing = [pkg for tool, pkg in NEEDED.items() if not shutil.which(tool, path=path)]
    return f"missing packages: apt-get install {' '.join(missing)}" if missing else None


def netns_marks() -> list[pytest.MarkDecorator]:
    """`pytestmark` for a namespace test module: marked, skipped with the reason, or
    refused outright when CI requires these tests."""
    reason = why_unavailable()
    if reason and os.environ.get("METALNET_REQUIRE_NETNS") == "1":
        raise RuntimeError(f"namespace tests required (METALNET_REQUIRE_NETNS=1) but {reason}")
    return [pytest.mark.netns, pytest.mark.skipif(reason is not None, reason=str(reason))]


def leftovers(prefix: str) -> list[str]:
    """Namespaces and links named with `prefix`, listed by `ip` itself."""
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True)
    names = [line.split()[0] for line in netns.stdout.splitlines()]
    names += [line.split(": ")[1].split("@")[0] for line in links.stdout.splitlines()]
    return [name for name in names if name.startswith(prefix)]


# Run a command as user nobody: not root, so the lab must refuse it, yet able to read
# the checkout and its venv wherever they are (a clone under a 0700 `mktemp -d` is not
# traversable by nobody): CAP_DAC_READ_SEARCH only, kept across the uid change as an
# ambient capability. It lets the process read files, nothing more.
NOBODY = (
    "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
    "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search",
)  # fmt: skip
