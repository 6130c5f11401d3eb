"""The service manager's readiness protocol: READY=1, RELOADING=1, STOPPING=1.

systemd's ``Type=notify`` waits for ``READY=1`` before it calls the unit started; with
``ExecReload`` it waits for ``RELOADING=1`` (carrying ``MONOTONIC_USEC``, required since
systemd 253 for ``Type=notify-reload`` and accepted before) followed by ``READY=1``; at
shutdown ``STOPPING=1`` says the stop is under way. The protocol is one datagram per
message on the unix socket named by ``$NOTIFY_SOCKET`` (sd_notify(3), "systemd.service(5),
Type="); a name starting with ``@`` is in the abstract namespace (a leading NUL byte).

Contract: :func:`notify` never raises and does nothing without ``$NOTIFY_SOCKET``; a
service manager that is gone must not stop mail. No dependency on libsystemd.
"""

from __future__ import annotations

import os
import socket
import time


def _address(name: str) -> str | bytes:
    if name.startswith("@"):
        return b"\0" + name[1:].encode()
    return name


def notify(*lines: str) -> bool:
    """Send ``KEY=VALUE`` lines to the service manager; True when a datagram left."""
    name = os.environ.get("NOTIFY_SOCKET", "")
    if not name or not (name.startswith("/") or name.startswith("@")):
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto("\n".join(lines).encode(), _address(name))
        return True
    except OSError:
        return False


def monotonic_usec() -> str:
    """MONOTONIC_USEC=... as sd_notify(3) asks with RELOADING=1 (CLOCK_MONOTONIC, microseconds)."""
    return f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"


def ready(status: str = "") -> bool:
    return notify("READY=1", *([f"STATUS={status}"] if status else []))


def reloading() -> bool:
    return notify("RELOADING=1", monotonic_usec())


def stopping() -> bool:
    return notify("STOPPING=1")
