"""The composition root: the one place that builds mailward's components from the
configuration and hands each role the narrow interface it needs.

Data flows one way — bytes → :mod:`mailward.smtp` events → :mod:`mailward.receive`
decisions (:mod:`mailward.policy`) → :mod:`mailward.spool` → :mod:`mailward.deliver` → the
next hop — and so do imports: receive never imports deliver, policy and smtp import neither,
and only this package (and :mod:`mailward.commands` above it) imports them all. The wiring:

* :func:`build_receiving` — what a receiving process needs: the spool, the server TLS
  context (and how to rebuild it on SIGHUP), and the receive policy over the shared access
  map with the local recipients (one :class:`~mailward.deliver.maildir.Mailboxes` decides
  both "does this local address exist" at RCPT and "which mailbox" at delivery), and the SMTP AUTH backend
  (:func:`mailward.auth.build.backend_from_config`; a submission listener needs it and a
  certificate). A worker process builds only this: no queue
  runner, resolver pool or client TLS context just to answer RCPT.
* :func:`build_delivery` — the queue runner over the same spool, for the process that
  delivers (the only one with ``server.workers = 1``, the master otherwise).
* :mod:`mailward.service.startup` — lock, bind, drop privileges; :mod:`.serve` — one
  process; :mod:`.master` — a master and its workers.

Failure behaviour: anything unusable in the configuration raises
:class:`~mailward.config.ConfigError` with one line naming the file, the setting and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from mailward.auth.build import backend_from_config
from mailward.config import Config, ConfigError
from mailward.listen import listener_problems
from mailward.deliver.aliases import AliasError, AliasTable
from mailward.deliver.maildir import Mailboxes
from mailward.policy.local import local_address
from mailward.deliver.routes import RouteError, RouteTable
from mailward.policy.receive import ReceivePolicy
from mailward.spool.store import Spool
from mailward.tls.context import TLSConfigError, server_context, tls_files_from_config


@dataclass
class Receiving:
    """What the listener (:class:`mailward.receive.server.SMTPServer`) is given."""
    spool: Spool
    tls_context: object | None
    reload_tls: Callable[[], object | None]     # a new server context, or ConfigError
    policy: ReceivePolicy     # every receive decision (sendmail's rulesets, local users)
    auth: object | None = None   # the SMTP AUTH backend (mailward.auth.AuthBackend), or None


def build_tls_context(config: Config):
    """The server's TLS context (confSERVER_CERT/KEY, confCACERT...); None without a certificate."""
    if not config.tls.cert_file:
        return None
    if not config.tls.key_file:
        raise ConfigError(f"{config.path}: tls.key_file: expected the key of {config.tls.cert_file}")
    try:
        return server_context(tls_files_from_config(config.tls))
    except TLSConfigError as err:
        raise ConfigError(str(err)) from None


def build_tables(config: Config) -> tuple[RouteTable, AliasTable]:
    try:
        return RouteTable(config.delivery.route_file or None), AliasTable(config.local.aliases or None)
    except (RouteError, AliasError) as err:
        raise ConfigError(str(err)) from None


def build_receiving(config: Config, spool: Spool | None = None) -> Receiving:
    spool = spool or Spool.from_settings(config.spool)
    routes, aliases = build_tables(config)
    mailboxes = Mailboxes.from_config(config, aliases)
    domains = frozenset(d.lower().rstrip(".") for d in config.local.domains)
    policy = ReceivePolicy.from_config(
        config, is_local=lambda address: local_address(address, domains, routes.route),
        local_user_exists=lambda address: mailboxes.find(address).exists)
    tls_context = build_tls_context(config)
    auth = backend_from_config(config)
    check_listeners(config, tls_context, auth)
    return Receiving(spool, tls_context, lambda: build_tls_context(config), policy, auth)


def check_listeners(config: Config, tls_context, auth) -> None:
    """A submission or submissions listener needs a certificate and an AUTH backend
    (:func:`mailward.listen.listener_problems`)."""
    problems = listener_problems(config.server.listen, has_tls=tls_context is not None, has_auth=auth is not None)
    if problems:
        raise ConfigError(f"{config.path}: {problems[0]}")


def build_delivery(config: Config, spool: Spool):
    """The queue runner (:mod:`mailward.deliver.runner`) for the process that delivers."""
    from mailward.deliver.runner import build_runner
    return build_runner(config, spool)
