"""The limits each listener role runs under: ``[server]`` for ``mx``, and ``[server]`` with
the ``[submission]`` section's non-zero overrides for ``submission`` and ``submissions``.

Why separate: mail clients on 587/465 are not MX peers. An office behind one NAT address opens
many submission connections at once, a client may send larger attachments than a site accepts
from strangers, and a person typing in a slow client needs longer timers — while port 25 keeps
its strict values (the same split Postfix makes with per-service ``-o`` overrides in master.cf).

Pure: settings in, settings out. A zero override means "as in [server]".
"""

from __future__ import annotations

import dataclasses

# [submission] key -> the [server] key it replaces on submission and submissions listeners.
OVERRIDES = ("max_message_size", "max_recipients", "max_connections_per_client", "max_bad_commands",
             "idle_timeout", "data_timeout", "tls_handshake_timeout")


def role_group(role: str) -> str:
    """What a role's connections are counted with: ``mx`` or ``submission`` (587 and 465 together)."""
    return "mx" if role == "mx" else "submission"


def server_settings_for(role: str, server, submission):
    """``server`` ([server] settings) as they apply on a listener of ``role``."""
    if role_group(role) == "mx" or submission is None:
        return server
    changes = {key: getattr(submission, key) for key in OVERRIDES if getattr(submission, key, 0)}
    return dataclasses.replace(server, **changes) if changes else server


def group_connection_limit(role: str, submission) -> int:
    """Concurrent connections the role's group may hold (0: only server.max_connections)."""
    if role_group(role) == "mx" or submission is None:
        return 0
    return getattr(submission, "max_connections", 0)
