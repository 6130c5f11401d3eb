"""Whose fault it is: the two exceptions of the SMTP protocol cores (as h11's are named).

:class:`LocalProtocolError` — the I/O layer called a core where the core's state does not
allow that call: a bug in mailward, never the peer's doing. The message names the call, the
state the core is in and the states the call is allowed in (``respond() is not allowed in
state GREETED: no decision is pending``).

:class:`RemoteProtocolError` — the peer sent something that is not SMTP. Only the client core
raises it (the next hop's fault: the delivery side tries another host or defers); the server
core answers every client mistake on the wire and never raises on input.
"""

from __future__ import annotations


class LocalProtocolError(RuntimeError):
    """A core was called in a state where that call is not allowed (our bug)."""


class RemoteProtocolError(Exception):
    """The server sent something that is not an SMTP reply, or a reply out of place."""
