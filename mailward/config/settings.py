"""Every setting of mailward.toml, declared once: one frozen dataclass per [section].

A setting is a typed field whose metadata carries its one-line documentation and its limits::

    max_recipients: int = setting(100, minimum=1, doc="Recipients per message ...")

Everything else is derived from these classes (:mod:`mailward.config.schema`): what the loader
accepts, the commented default file (``mailward config`` / quickstart) and the README's
configuration table. To add a setting, add a field here, then run scripts/update-readme-config.

The field's type says what the file may hold and what the loaded value is:

- ``bool``: true or false.
- ``int``: an integer; ``float``: a number (an integer is widened to float).
- ``str``: a string; ``Literal["a", "b"]``: one of those strings.
- ``FilePath``: a path (string); loaded as an absolute :class:`~pathlib.Path`, or "" when empty.
- ``tuple[str, ...]``: a list of strings; loaded as a tuple.

The default of a field is the value as written in the file: a ``FilePath`` default is the
text ("spool"), resolved against the config file's folder by the loader. Build settings with
:func:`mailward.config.from_dict` (or :func:`~mailward.config.load`), which checks and resolves
every value; constructing these classes directly checks nothing.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from mailward.listen import parse_listen

# A path setting: an absolute Path once loaded, or "" when the file leaves it empty (the
# settings that name an optional file are off when empty; callers test it with ``if``).
FilePath = Path | Literal[""]


def setting(default: Any, *, doc: str, minimum: float | None = None,
            check: Callable[[Any], str | None] | None = None) -> Any:
    """A field of a settings class: its default, its documentation, and optional checks.

    ``minimum`` bounds a number from below; ``check`` gets the loaded value and returns what
    was expected (completing "expected ...") or None. The choices of a ``Literal`` field are
    its type's arguments.
    """
    return field(default=default, metadata={"doc": doc, "minimum": minimum, "check": check})


def _listen_check(value: tuple[str, ...]) -> str | None:
    """server.listen: the entries start-up will bind, read by the same parser (mailward.listen)."""
    for item in value:
        try:
            parse_listen(item)
        except ValueError as err:
            return str(err)
    return None


def _networks_check(value: tuple[str, ...]) -> str | None:
    """A list of networks in CIDR form (an address alone is its own /32 or /128)."""
    import ipaddress

    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            return f"networks like \"127.0.0.0/8\" or \"2001:db8::/32\" (not {item!r})"
    return None


def _regex_check(value: str) -> str | None:
    """policy.cert_regex_*: empty or a valid Python regular expression."""
    import re

    if not value:
        return None
    try:
        re.compile(value)
    except re.error as err:
        return f"a regular expression ({err})"
    return None


@dataclass(frozen=True)
class ServerSettings:
    """[server]: the listener, the SMTP session's limits and timers, and the account it runs as."""

    hostname: str = setting("localhost", doc="Name in the 220 greeting, EHLO reply and Received: header.")
    listen: tuple[str, ...] = setting(("127.0.0.1:2525",), check=_listen_check, doc=(
        "Addresses to listen on, HOST:PORT ([::1]:25 for IPv6), each optionally followed by a role: mx (the "
        "default), submission (RFC 6409: STARTTLS and AUTH before MAIL, e.g. \"0.0.0.0:587 submission\") or "
        "submissions (RFC 8314: implicit TLS, e.g. \"0.0.0.0:465 submissions\"). See docs/submission.md."))
    max_command_line: int = setting(512, minimum=64, doc=
        "Longest command line in octets, CRLF included (RFC 5321 §4.5.3.1.4).")
    max_text_line: int = setting(1000, minimum=80, doc=
        "Longest DATA line in octets, CRLF included (RFC 5321 §4.5.3.1.6).")
    max_message_size: int = setting(26214400, minimum=1024, doc=
        "Largest message in octets; announced as SIZE in EHLO.")
    max_recipients: int = setting(100, minimum=1, doc=
        "Recipients per message (RFC 5321 §4.5.3.1.8 asks for at least 100).")
    workers: int = setting(1, minimum=1, doc=(
        "Receiving processes. Above 1, a master process binds the sockets, runs the queue, and starts this "
        "many workers that share the listening sockets (one per core uses every core). Connection limits then "
        "hold per worker."))
    max_connections: int = setting(1000, minimum=1, doc="Concurrent connections in all; more get 421 4.3.2.")
    max_connections_per_client: int = setting(20, minimum=1, doc=
        "Concurrent connections from one client address.")
    client_limit_exceptions: tuple[str, ...] = setting(("127.0.0.0/8", "::1/128"), check=_networks_check, doc=(
        "Client networks (CIDR) exempt from max_connections_per_client, so a local submitter or benchmark is "
        "not refused (Postfix: smtpd_client_event_limit_exceptions, default $mynetworks). Empty: none."))
    idle_timeout: float = setting(300.0, minimum=0.1, doc=
        "Seconds to wait for a command (RFC 5321 §4.5.3.2.7: 5 minutes).")
    data_timeout: float = setting(600.0, minimum=0.1, doc=(
        "Seconds to wait for each DATA block (RFC 5321 §4.5.3.2.5: 3 minutes minimum; §4.5.3.2.6 allows 10 "
        "for the end)."))
    tls_handshake_timeout: float = setting(30.0, minimum=0.1, doc="Seconds a TLS handshake may take.")
    max_bad_commands: int = setting(20, minimum=1, doc="Errors in one session before 421 and close.")
    bare_line_endings: Literal["reject", "normalise"] = setting("reject", doc=
        "A bare CR or LF in a command or DATA: reject (5xx) or normalise to CRLF.")
    reverse_lookup: bool = setting(True, doc=
        "Look up the client's name (sendmail's ${client_name}); false uses [address].")
    shutdown_grace: float = setting(10.0, minimum=0, doc=
        "Seconds open sessions get to finish at shutdown before 421.")
    forbid_unauth_pipelining: bool = setting(True, doc=(
        "Refuse clients that do not wait for a reply where RFC 2920 §3.1 requires it: EHLO/HELO with more "
        "behind it gets 554 5.5.0 and sendmail's nullserver answers for the rest of the session; bytes before "
        "the greeting or message text before the 354 get 554 5.5.0 and the connection is closed (Postfix: "
        "smtpd_forbid_unauth_pipelining)."))
    reject_nul_in_data: bool = setting(True, doc=(
        "A message holding a NUL octet is refused with 554 5.6.0 after its end (RFC 5322 §3.5); false keeps "
        "it byte for byte."))
    requiretls: bool = setting(True, doc=(
        "Offer REQUIRETLS (RFC 8689) in the EHLO reply after STARTTLS and keep MAIL's REQUIRETLS with the "
        "message (refused in clear: 530 5.7.10); false: neither offered nor accepted."))
    user: str = setting("", doc=(
        "Account to run as after binding the listening sockets when started as root (sendmail: RunAsUser). "
        "Must exist; nothing creates it. Empty: no privilege drop."))
    group: str = setting("", doc="Group to run as with server.user. Empty: that account's own group.")
    allow_root: bool = setting(False, doc=
        "Run as root without server.user even when listening on a port below 1024 (refused otherwise).")


@dataclass(frozen=True)
class TLSSettings:
    """[tls]: the certificate and trust of STARTTLS; outbound servers are verified with ca_file/ca_path too."""

    cert_file: FilePath = setting("", doc=
        "Server certificate (PEM, chain after the leaf). Empty: no STARTTLS. sendmail: confSERVER_CERT.")
    key_file: FilePath = setting("", doc=
        "Server private key (PEM, unencrypted, mode 0600). sendmail: confSERVER_KEY.")
    ca_file: FilePath = setting("", doc="CA certificates trusted for client certificates. sendmail: confCACERT.")
    ca_path: FilePath = setting("", doc=
        "Folder of hash-named CA certificates (c_rehash layout). sendmail: confCACERT_PATH.")
    crl_file: FilePath = setting("", doc=
        "Revocation lists (PEM); a revoked client certificate gives verify=FAIL.")
    request_client_cert: bool = setting(True, doc=
        "Ask clients for a certificate during the handshake (verify=NOT when false).")
    min_version: Literal["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"] = setting("TLSv1.2", doc=
        "Oldest TLS version accepted.")
    ciphers: str = setting("ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS", doc=
        "OpenSSL cipher list for TLS 1.2 and older (TLS 1.3 suites are OpenSSL's defaults).")


@dataclass(frozen=True)
class SpoolSettings:
    """[spool]: the durable queue."""

    directory: FilePath = setting("spool", doc="Queue folder; must be on a file system that honours fsync.")
    fsync: bool = setting(True, doc=
        "fsync message files and folders before answering 250. Only turn off for throwaway test servers.")
    min_free_space: int = setting(0, minimum=0, doc=(
        "Octets that must stay free in the spool's file system; below it MAIL gets 452 4.3.1. 0: rely on the "
        "write failing."))
    format: Literal["files", "log"] = setting("log", doc=(
        "How new messages are written: 'log' (appended to this process's segment in log/, one fdatasync for "
        "every message waiting: about twice the messages per second of 'files' on ext4, see docs/performance.md) "
        "or 'files' (a file each, fsynced, renamed into queue/, the folder fsynced). Either format is always "
        "read, so a change strands nothing."))
    segment_size: int = setting(16 << 20, minimum=65536, doc=(
        "spool.format = 'log': octets after which a segment is closed and a new one started."))
    compact_after: float = setting(600.0, minimum=0, doc=(
        "spool.format = 'log': seconds after which a closed segment whose live messages fill less than half of "
        "it has them copied forward and is deleted."))
    log_sync: Literal["thread", "loop"] = setting("loop", doc=(
        "spool.format = 'log': where a batch is written and fdatasynced: 'loop' (right before the 250s, as the "
        "folder fsync of 'files': after a crash as few messages sent twice by clients as with files) or 'thread' "
        "(the commit thread: the event loop never waits for the disk, but a crash leaves about four times as "
        "many duplicates). Measured alike in msgs/s."))


@dataclass(frozen=True)
class LocalSettings:
    """[local]: the domains and users delivered to Maildirs on this machine."""

    domains: tuple[str, ...] = setting(("localhost",), doc="Domains delivered on this machine.")
    maildir_root: FilePath = setting("maildir", doc="Each local user's Maildir is MAILDIR_ROOT/USER/.")
    users: tuple[str, ...] = setting((), doc=(
        "Local users that exist (with the aliases and the folders already under maildir_root)."))
    accept_unknown_users: bool = setting(False, doc=(
        "Accept mail for any local part that maps to a mailbox name, not only known users (unknown ones get "
        "550 5.1.1 at RCPT otherwise, as Postfix's local_recipient_maps)."))
    aliases: FilePath = setting("", doc=(
        "Aliases file (sendmail form: 'name: target, target'); targets are local users, remote addresses or "
        "other aliases. Empty: no aliases."))


@dataclass(frozen=True)
class PolicySettings:
    """[policy]: the sendmail-style access map and relaying."""

    access_map: FilePath = setting("", doc=(
        "sendmail-format access map (TLS_Clt, TLS_Srv, TLS_Rcpt, CERTISSUER, Try_TLS, Srv_Features, "
        "Connect/From/To). Empty: no map. Reloaded when it changes and on SIGHUP."))
    tls_perm_err: bool = setting(False, doc=(
        "Unmet TLS requirements without TEMP+/PERM+ fail permanently (554 5.7.0) instead of 454 4.7.0. "
        "sendmail: TLS_PERM_ERR."))
    relay_domains: tuple[str, ...] = setting((), doc=(
        "Domains (and their subdomains) relayed to, and client names or address prefixes allowed to relay. "
        "sendmail: class R / relay-domains."))
    cert_regex_issuer: str = setting("", check=_regex_check, doc=(
        "Regular expression applied to cert_issuer before the CERTISSUER lookup (first group, or the match). "
        "sendmail: _CERT_REGEX_ISSUER_."))
    cert_regex_subject: str = setting("", check=_regex_check, doc=(
        "Regular expression applied to cert_subject before the CERTSUBJECT lookup. sendmail: "
        "_CERT_REGEX_SUBJECT_."))


@dataclass(frozen=True)
class DeliverySettings:
    """[delivery]: sending to the next hop: routes, DNS, outbound TLS, retries and concurrency."""

    route_file: FilePath = setting("", doc=(
        "mailertable-style routes: 'DOMAIN  [host]:port', 'DOMAIN  host' (MX lookup) or 'DOMAIN  local'; "
        "'.DOMAIN' matches subdomains. Empty: DNS for every non-local domain."))
    resolver: tuple[str, ...] = setting((), doc=
        "DNS servers to ask, \"ADDR\" or \"ADDR:PORT\" ([::1]:53 for IPv6). Empty: the system's resolv.conf.")
    dns_timeout: float = setting(10.0, minimum=0.1, doc=
        "Seconds a DNS lookup may take; a timeout defers the mail.")
    smtp_port: int = setting(25, minimum=1, doc="Port used for hosts found by MX or address lookup.")
    helo_name: str = setting("", doc="Name sent in EHLO/HELO. Empty: server.hostname.")
    starttls: bool = setting(True, doc=(
        "Use STARTTLS whenever the next hop offers it (opportunistic TLS; Try_TLS:host NO in the access map "
        "turns it off per host)."))
    tls_fallback_to_clear: bool = setting(True, doc=(
        "After a failed handshake (verify=SOFTWARE) retry that host without TLS, subject to TLS_Srv/TLS_Rcpt. "
        "sendmail: TLSFallbacktoClear."))
    tls_floor: Literal["may", "encrypt", "verify"] = setting("may", doc=(
        "The least TLS a delivery accepts when no access map entry, DANE, MTA-STS or REQUIRETLS decides: may "
        "(opportunistic STARTTLS), encrypt (STARTTLS required, certificate not checked), verify (the certificate "
        "must verify with tls.ca_file/tls.ca_path and match the host name). See docs/outbound-tls.md."))
    client_cert_file: FilePath = setting("", doc=(
        "Client certificate presented to servers that ask for one (PEM). sendmail: confCLIENT_CERT. Servers "
        "are verified with tls.ca_file/tls.ca_path."))
    client_key_file: FilePath = setting("", doc=
        "Key of the client certificate (unencrypted, mode 0600). sendmail: confCLIENT_KEY.")
    connect_timeout: float = setting(30.0, minimum=0.1, doc=
        "Seconds to wait for a TCP connection and the greeting.")
    command_timeout: float = setting(300.0, minimum=0.1, doc=
        "Seconds to wait for a reply (RFC 5321 §4.5.3.2: 5 minutes; 10 after the final dot).")
    retry_first: float = setting(300.0, minimum=0, doc="Seconds before the first retry of a deferred message.")
    retry_max: float = setting(14400.0, minimum=0, doc=
        "Longest wait between two retries (backoff doubles up to this).")
    retry_jitter: float = setting(0.2, minimum=0, doc=
        "Random spread of each retry time, as a fraction (0.2: +/-20%).")
    give_up_after: float = setting(432000.0, minimum=0, doc=
        "Seconds after arrival when a deferred recipient is bounced (5 days, RFC 5321 §4.5.4.1).")
    delay_warning: float = setting(0.0, minimum=0, doc=
        "Seconds after arrival when a delay DSN is sent once to senders whose NOTIFY allows it. 0: never.")
    max_deliveries: int = setting(20, minimum=1, doc="Messages delivered at the same time in all.")
    max_per_destination: int = setting(4, minimum=1, doc=
        "Connections at the same time to one destination (domain or route).")
    max_messages_per_connection: int = setting(100, minimum=1, doc=
        "Messages sent over one connection before it is closed (connection reuse).")
    connection_idle: float = setting(5.0, minimum=0, doc="Seconds an idle outbound connection is kept for reuse.")
    bounce_max_content: int = setting(1048576, minimum=0, doc=
        "Largest original returned whole in a bounce; bigger ones are returned as headers only (RET=HDRS).")


@dataclass(frozen=True)
class DaneSettings:
    """[dane]: DANE for outbound SMTP (RFC 7672): TLSA records from DNSSEC-validating resolvers."""

    def _servers_check(value: tuple[str, ...]) -> str | None:  # noqa: N805 (a plain function)
        """dane.resolver: addresses, as mailward.dns.parse_server reads them."""
        import ipaddress

        for item in value:
            host, port = item.strip(), "53"
            if host.startswith("["):
                host, _, port = host[1:].partition("]")
                port = port[1:] if port.startswith(":") else "53"
            elif host.count(":") == 1:
                host, _, port = host.partition(":")
            try:
                ipaddress.ip_address(host)
                if not 0 < int(port) < 65536:
                    raise ValueError(port)
            except ValueError:
                return f"ADDR or ADDR:PORT of a validating resolver, not {item!r}"
        return None

    resolver: tuple[str, ...] = setting((), check=_servers_check, doc=(
        "Validating resolvers trusted for the AD bit, \"ADDR\" or \"ADDR:PORT\" (e.g. a local unbound on "
        "127.0.0.1:53). Empty: DANE off. See docs/dane.md."))
    timeout: float = setting(10.0, minimum=0.1, doc=
        "Seconds a DNSSEC lookup (MX, address, TLSA) may take; a timeout or SERVFAIL defers the mail.")


@dataclass(frozen=True)
class MtaStsSettings:
    """[mta_sts]: MTA-STS (RFC 8461) on the sending side: fetch, cache and apply recipient domains' policies."""

    enabled: bool = setting(True, doc=(
        "Look up the MTA-STS policy of each recipient domain (the _mta-sts TXT record, then "
        "https://mta-sts.DOMAIN/.well-known/mta-sts.txt). See docs/mta-sts.md."))
    ca_file: FilePath = setting("", doc=
        "CA certificates (PEM) trusted for the policy hosts' HTTPS certificates. Empty: the system's trust store.")
    cache_file: FilePath = setting("", doc=(
        "JSON file keeping fetched policies for their max_age across restarts (written atomically). "
        "Empty: mta-sts-cache.json in spool.directory."))
    fetch_timeout: float = setting(10.0, minimum=0.1, doc=
        "Seconds a policy fetch may take in all (address lookup, connection, TLS, answer).")
    max_policy_size: int = setting(65536, minimum=256, doc=
        "Largest policy file accepted, in octets; a bigger one is a fetch error (RFC 8461 §3.3).")
    fetch_retry: float = setting(300.0, minimum=0, doc=(
        "Seconds a failed policy fetch is remembered for that domain and id before it is tried again "
        "(meanwhile deliveries get the same answer without waiting for the policy host). 0: every time."))
    refresh_after: float = setting(86400.0, minimum=60, doc=(
        "Seconds after which a cached policy is fetched again in the background (at most half its "
        "max_age), so it does not expire while the domain still publishes it."))
    https_port: int = setting(443, minimum=1, doc=(
        "Port of the policy host. For tests and labs only: RFC 8461 §3.3 fetches policies from port 443, "
        "and any other value breaks MTA-STS for real domains."))


def _mechanisms_check(value: tuple[str, ...]) -> str | None:
    """auth.mechanisms: SASL mechanism names (RFC 4422 §3.1: 1 to 20 of A-Z 0-9 - _)."""
    import re

    for name in value:
        if not re.fullmatch(r"[A-Z0-9_-]{1,20}", name):
            return f"SASL mechanism names in upper case (RFC 4422 §3.1), not {name!r}"
    return None


@dataclass(frozen=True)
class AuthSettings:
    """[auth]: SMTP AUTH (RFC 4954): where passwords are checked and which SASL mechanisms are offered."""

    backend: Literal["none", "file", "dovecot"] = setting("none", doc=(
        "none: no AUTH; file: the users file auth.users_file (managed with `mailward user`); dovecot: "
        "Dovecot's auth-client socket auth.dovecot_socket. See docs/submission.md."))
    users_file: FilePath = setting("", doc=(
        "The users file (NAME:ARGON2ID:SCRAM lines), mode 0600 or 0640; re-read when it changes."))
    dovecot_socket: FilePath = setting("", doc=(
        "Dovecot's auth-client UNIX socket (a unix_listener of its auth service, e.g. "
        "/var/spool/mailward/dovecot-auth)."))
    dovecot_service: str = setting("smtp", doc=
        "Service name sent to Dovecot (its %s / %{protocol}, for protocol-specific passdb settings).")
    mechanisms: tuple[str, ...] = setting(("SCRAM-SHA-256", "PLAIN", "LOGIN"), check=_mechanisms_check, doc=(
        "Mechanisms offered, in this order. The users file knows SCRAM-SHA-256, PLAIN, LOGIN and EXTERNAL "
        "(offered only to a client with a verified certificate identity); with Dovecot, those of these that "
        "Dovecot announces. PLAIN and LOGIN are offered only under TLS."))
    timeout: float = setting(30.0, minimum=0.1, doc=(
        "Seconds to wait for each answer from Dovecot (and to connect); then 454 4.7.0. Dovecot itself delays "
        "failures (auth_failure_delay, 2 s) and clients that failed before (up to 15 s): keep this above."))
    password_checks: int = setting(2, minimum=1, doc=(
        "argon2id checks run at the same time (each takes tens of milliseconds of CPU); more AUTH commands "
        "wait their turn."))


@dataclass(frozen=True)
class SubmissionSettings:
    """[submission]: authenticated clients on the receiving side: sender ownership, rate and AUTH failure
    limits, and the session limits of the submission and submissions listeners."""

    sender_login_map: FilePath = setting("", doc=(
        "File of 'sender-address-or-@domain  user1, user2' lines: an authenticated client may use only the "
        "envelope senders listed for its user (553 5.7.1 otherwise; Postfix: smtpd_sender_login_maps). Empty: "
        "no check."))
    rate_limit_messages: int = setting(200, minimum=0, doc=(
        "Messages one authenticated user may send per submission.rate_limit_window; more get 450 4.7.1 at MAIL. "
        "0: no limit. Counted per receiving process."))
    rate_limit_window: float = setting(3600.0, minimum=1, doc="Seconds over which rate_limit_messages counts.")
    auth_failure_delay: float = setting(1.0, minimum=0, doc=(
        "Seconds before a 535 reply, times the number of failures from the client's address within "
        "auth_failure_window, this one included (a delay that grows across connections too)."))
    max_auth_failures: int = setting(5, minimum=1, doc=(
        "Failed AUTH attempts from one client address within auth_failure_window; the next AUTH gets 421 4.7.0 "
        "and the connection is closed."))
    auth_failure_window: float = setting(900.0, minimum=1, doc="Seconds a failed AUTH counts against its address.")
    auth_failure_prefix_length: int = setting(64, minimum=1, check=lambda v: None if v <= 128 else (
        f"a prefix length from 1 to 128, not {v}"), doc=(
        "IPv6 clients are counted for max_auth_failures by their network of this prefix length (a host "
        "usually holds a whole /64); 128: each address on its own. IPv4 addresses count on their own."))
    # Limits of the submission and submissions listeners (mailward.receive.role_limits); 0: as [server].
    max_message_size: int = setting(0, minimum=0, doc=(
        "Largest message in octets on submission and submissions listeners (their EHLO's SIZE); 0: "
        "server.max_message_size."))
    max_recipients: int = setting(0, minimum=0, doc=
        "Recipients per message on submission and submissions listeners; 0: server.max_recipients.")
    max_connections: int = setting(0, minimum=0, doc=(
        "Concurrent connections on submission and submissions listeners together (within "
        "server.max_connections); more get 421 4.3.2. 0: no cap of their own."))
    max_connections_per_client: int = setting(0, minimum=0, doc=(
        "Concurrent submission connections from one client address, counted apart from its port 25 "
        "connections (an office behind one NAT address); 0: server.max_connections_per_client."))
    max_bad_commands: int = setting(0, minimum=0, doc=
        "Errors in one submission session before 421 and close; 0: server.max_bad_commands.")
    idle_timeout: float = setting(0.0, minimum=0, doc=
        "Seconds a submission session waits for a command; 0: server.idle_timeout.")
    data_timeout: float = setting(0.0, minimum=0, doc=
        "Seconds a submission session waits for each DATA block; 0: server.data_timeout.")
    tls_handshake_timeout: float = setting(0.0, minimum=0, doc=
        "Seconds a TLS handshake may take on submission listeners; 0: server.tls_handshake_timeout.")
    external_identity: Literal["none", "cn"] = setting("none", doc=(
        "AUTH EXTERNAL (RFC 4422): none, or cn: a client certificate that verified (verify=OK) authenticates "
        "as the user named by its subject's CN."))


@dataclass(frozen=True)
class TlsRptSettings:
    """[tls_rpt]: SMTP TLS Reporting (RFC 8460): count outbound TLS sessions, send daily reports. See docs/tls-rpt.md."""

    def _hour_check(value: int) -> str | None:  # noqa: N805 (a plain function)
        return None if 0 <= value <= 23 else f"an hour of the day, 0 to 23 (UTC), not {value}"

    enabled: bool = setting(True, doc=(
        "Count the outcome of every outbound TLS session per recipient policy domain and send each domain "
        "that publishes a _smtp._tls TXT record a daily report (mailto: through the queue, https: POST)."))
    organization: str = setting("", doc=
        "organization-name of the reports (RFC 8460 §4.4). Empty: server.hostname.")
    contact: str = setting("", doc=
        "contact-info of the reports: an address or URL for questions. Empty: postmaster@server.hostname.")
    from_address: str = setting("", doc=(
        "From: and envelope sender of report messages sent to mailto: destinations. Empty: "
        "postmaster@server.hostname."))
    state_dir: FilePath = setting("", doc=(
        "Folder of the counts (counts.json and a journal), written by the delivering process only. Empty: "
        "tlsrpt/ in spool.directory."))
    ca_file: FilePath = setting("", doc=(
        "CA certificates (PEM) trusted for https: report destinations (WebPKI, host name checked). Empty: the "
        "system's trust store."))
    send_hour: int = setting(1, minimum=0, check=_hour_check, doc=(
        "UTC hour from which yesterday's reports are sent (reports of older days go out at once)."))
    check_interval: float = setting(300.0, minimum=1, doc=
        "Seconds between two looks for due reports by the running server.")
    retry_interval: float = setting(3600.0, minimum=1, doc=(
        "Seconds before a report is tried again after a DNS failure or a failed https: POST (each "
        "destination gets the report once; mailto: reports are retried by the queue)."))
    http_timeout: float = setting(30.0, minimum=0.1, doc="Seconds an https: POST of a report may take.")
    keep_days: int = setting(7, minimum=2, doc=(
        "Days a report that could not be sent is kept and tried again; older counts are dropped with one log "
        "line."))
    sync_interval: float = setting(5.0, minimum=0, doc=(
        "At most this many seconds of counts can be lost by a power failure (the journal is fdatasynced that "
        "often); a crash of the process loses none."))
    compact_bytes: int = setting(4194304, minimum=4096, doc=
        "Journal size in octets after which the counts are written to counts.json and a new journal begun.")


@dataclass(frozen=True)
class LogSettings:
    """[log]: where and how much is logged."""

    level: Literal["debug", "info", "notice", "warning", "error"] = setting("info", doc=
        "Least severe level logged.")
    file: FilePath = setting("", doc=(
        "Log file, created 0640, reopened when rotated and on SIGHUP; empty: standard error (under systemd in "
        "the journal's format with <N> priorities)."))
    json: bool = setting(False, doc="Write structured JSON lines instead of sendmail-style lines.")
    syslog: bool = setting(False, doc=(
        "Log to the system logger through log.syslog_address instead of log.file or standard error; the syslog "
        "daemon adds time and host name (rsyslog's mail.log, which logwatch reads; the journal as mailward)."))
    syslog_address: str = setting("/dev/log", doc=(
        "A unix datagram socket (@NAME for the abstract namespace), or HOST:PORT for remote syslog over UDP "
        "(RFC 3164, with this host's name)."))
    facility: Literal["kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
                      "authpriv", "ftp", "local0", "local1", "local2", "local3", "local4", "local5", "local6",
                      "local7"] = setting("mail", doc="Syslog facility of every line.")


@dataclass(frozen=True)
class Config:
    """Validated settings: ``config.server.max_command_line`` etc., plus where they came from.

    The sections appear in the default file and the reference in the order of these fields.
    """

    server: ServerSettings
    tls: TLSSettings
    spool: SpoolSettings
    local: LocalSettings
    policy: PolicySettings
    delivery: DeliverySettings
    dane: DaneSettings
    mta_sts: MtaStsSettings
    auth: AuthSettings
    submission: SubmissionSettings
    tls_rpt: TlsRptSettings
    log: LogSettings
    path: Path | None = None  # the file they were read from; None for from_dict() without one
