"""``server.listen`` entries, parsed in one place: ``HOST:PORT``, ``[v6]:PORT``, each with an
optional role after a space: ``"127.0.0.1:587 submission"``.

Roles (what a listener is for; an entry without one is ``mx``, as every entry was before
roles existed, so old configurations keep their meaning):

* ``mx`` — mail exchange on port 25 (RFC 5321): STARTTLS offered, AUTH only after STARTTLS.
* ``submission`` — message submission on port 587 (RFC 6409): STARTTLS and AUTH are required
  before MAIL (``530 5.7.0``).
* ``submissions`` — submission over implicit TLS on port 465 (RFC 8314 §3.3): the TLS
  handshake starts at connect, then as ``submission``.

Used by the configuration check, the binding of the sockets at start, the privileged-port
rule, the listener (which role a socket has) and the delivery side's MX-loop check (the
addresses it must not deliver to). Pure; raises ValueError naming what is expected."""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("mx", "submission", "submissions")


@dataclass(frozen=True)
class Listener:
    host: str
    port: int
    role: str = "mx"

    @property
    def submission(self) -> bool:
        """STARTTLS (or implicit TLS) and AUTH before MAIL (RFC 6409 §3.3, RFC 8314)."""
        return self.role in ("submission", "submissions")

    @property
    def implicit_tls(self) -> bool:
        return self.role == "submissions"


def parse_listener(item: str) -> Listener:
    """``"127.0.0.1:2525"`` → Listener("127.0.0.1", 2525, "mx"); ``"[::1]:465 submissions"``
    → Listener("::1", 465, "submissions"). Raises ValueError naming what is expected."""
    address, _, role = item.strip().partition(" ")
    role = role.strip().lower() or "mx"
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host.strip("[]"):
        raise ValueError(f'HOST:PORT entries like "127.0.0.1:2525" or "[::1]:25", optionally followed by a '
                         f'role (mx, submission, submissions) as in "127.0.0.1:587 submission" (not {item!r})')
    if role not in ROLES:
        raise ValueError(f"a listener role among {', '.join(ROLES)} after HOST:PORT (not {role!r} in {item!r})")
    return Listener(host.strip("[]"), int(port), role)


def parse_listen(item: str) -> tuple[str, int]:
    """``"127.0.0.1:2525"`` → ("127.0.0.1", 2525); ``"[::1]:25"`` → ("::1", 25); a role after
    the address is checked and left out. Raises ValueError naming what is expected."""
    listener = parse_listener(item)
    return listener.host, listener.port


def role_of(sockname: tuple, entries) -> str:
    """The role of a bound socket (its ``getsockname()``) among ``server.listen`` entries: the
    entry with its port and address, else the first with its port (a host name bound to
    its addresses), else ``mx``."""
    addr, port = sockname[0], sockname[1]
    listeners = [parse_listener(item) for item in entries]
    for listener in listeners:
        if listener.port == port and listener.host == addr:
            return listener.role
    for listener in listeners:
        if listener.port == port:
            return listener.role
    return "mx"


def listener_problems(entries, *, has_tls: bool, has_auth: bool) -> list[str]:
    """What stops a submission or submissions listener from working, one line each with its
    fix: TLS comes before AUTH (RFC 8314 §3) and MAIL needs AUTH there (RFC 6409 §3.3).
    Entries that do not parse are the configuration check's (ValueError)."""
    problems = []
    for item in entries:
        if not parse_listener(item).submission:
            continue
        if not has_tls:
            problems.append(f"server.listen: {item!r} needs TLS; fix: set tls.cert_file and tls.key_file")
        elif not has_auth:
            problems.append(f"server.listen: {item!r} needs SMTP AUTH; fix: set auth.backend (file or dovecot), "
                            f"see docs/submission.md")
    return problems
