"""`metalnet sim bmc`: run one simulated BMC in the foreground.

Useful to try the power drivers, `ipmitool -I lanplus -C 3` or a Redfish client
against something real-looking without a server at hand. Every request is logged.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from types import FrameType

from metalnet.errors import InputError
from metalnet.validate import check_listen

BMC_KINDS = ("redfish", "ipmi")


def serve_bmc(kind: str, listen: str, node: str, username: str, password: str) -> None:
    """Serve a `kind` ("redfish" or "ipmi") BMC for `node` until SIGINT or SIGTERM.

    Prints the BMC URL to enroll the node with (useful with port 0), then logs each
    request on stderr.
    """
    if kind not in BMC_KINDS:
        raise InputError(f"invalid BMC kind {kind!r}: expected one of {', '.join(BMC_KINDS)}")
    host, port = check_listen(listen)
    from metalnet.sim.bmc import IpmiBmc, RedfishBmc, SimNodePower

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    bmc_class = RedfishBmc if kind == "redfish" else IpmiBmc
    bmc = bmc_class(SimNodePower(node), username, password, host, port)
    try:
        bmc.start()
    except OSError as exc:
        raise InputError(f"cannot listen on {listen!r}: {exc.strerror or exc}") from None
    print(f"node {node}: {kind} BMC at {bmc.url} (Ctrl-C to stop)", flush=True)
    try:
        _wait_for_signal()
    finally:
        bmc.stop()


def _wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM, then restore the previous handlers.

    The handler only appends to a list: setting a threading.Event from a signal
    handler can deadlock when the signal lands while the main thread holds that
    Event's lock.
    """
    received: list[int] = []

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not received:
            time.sleep(0.2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
