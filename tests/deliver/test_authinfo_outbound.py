"""The delivery client's AUTH step with ``AuthInfo:`` against aiosmtpd smarthosts with real
STARTTLS on loopback (aiosmtpd's AUTH: PLAIN and LOGIN): the identities that arrive, a
server that offers no AUTH, no mechanism in common, and the access map's lookup order."""

from __future__ import annotations

import asyncio
import logging
import ssl

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from mailward.deliver.outbound import Outbound, PendingRecipient, Transfer
from mailward.deliver.routes import Hop
from mailward.policy.accessmap import AccessMap
from mailward.policy.deliver import DeliveryPolicy
from mailward.policy.holder import AccessMapHolder
from mailward.tls.context import TLSFiles, client_context
from tests.conftest import free_port

PASSWORD = "Ou7bound pw"


class Smarthost:
    """An aiosmtpd server with STARTTLS and, unless ``auth`` is False, AUTH PLAIN/LOGIN."""

    def __init__(self, pki, *, auth: bool = True, exclude: tuple[str, ...] = ()):
        self.logins: list[tuple[str, str, str]] = []   # (mechanism, login, password)
        self.messages: list[bytes] = []
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pki.server_cert, pki.server_key)
        self.port = free_port()
        # aiosmtpd offers AUTH whenever it has a mechanism left: excluding both turns it off
        kw = {"authenticator": self.check, "auth_exclude_mechanism": list(exclude if auth else ("PLAIN", "LOGIN"))}
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, tls_context=ctx,
                                     server_hostname="smarthost.test", auth_require_tls=True, **kw)

    def check(self, server, session, envelope, mechanism, auth_data):
        login, password = auth_data.login.decode(), auth_data.password.decode()
        self.logins.append((mechanism, login, password))
        return AuthResult(success=password == PASSWORD)

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope.original_content or envelope.content)
        return "250 2.0.0 accepted"

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()


def deliver(pki, port: int, access: str, name: str = "[127.0.0.1]"):
    policy = DeliveryPolicy(AccessMapHolder(None, AccessMap.from_text(access, "access")))
    out = Outbound(helo_name="mw.test", tls_context=client_context(TLSFiles(ca_file=str(pki.ca))),
                   connect_timeout=5, command_timeout=10, policy=policy)
    content = b"Subject: t\r\n\r\nhi\r\n"
    transfer = Transfer("QAUTH", "a@mw.test", {}, [PendingRecipient(0, "b@remote.example", {})],
                        lambda: iter([content]), len(content))

    async def main():
        try:
            return await out.deliver(transfer, [Hop(name, "127.0.0.1", port)])
        finally:
            await out.pool.close_all()
    return asyncio.run(main())[0]


def test_plain_sends_the_authentication_identity(pki, caplog):
    caplog.set_level(logging.INFO, logger="mailward")
    with Smarthost(pki) as host:
        outcome = deliver(pki, host.port, f'AuthInfo:[127.0.0.1] "U:relay" "P:{PASSWORD}"')
    assert outcome.reply.code == 250, outcome
    assert host.logins == [("PLAIN", "relay", PASSWORD)] and len(host.messages) == 1
    assert "AUTH=client, relay=[127.0.0.1], mech=PLAIN, bits=0" in caplog.text
    assert PASSWORD not in caplog.text


def test_the_m_list_orders_the_mechanisms(pki):
    with Smarthost(pki) as host:
        assert deliver(pki, host.port, f'AuthInfo: "I:relay" "P:{PASSWORD}" "M:LOGIN PLAIN"').reply.code == 250
    assert host.logins == [("LOGIN", "relay", PASSWORD)]


def test_a_server_without_auth_gets_the_message_without(pki, caplog):
    caplog.set_level(logging.INFO, logger="mailward")
    with Smarthost(pki, auth=False) as host:
        assert deliver(pki, host.port, f'AuthInfo:127.0.0.1 "U:relay" "P:{PASSWORD}"').reply.code == 250
    assert "AUTH=client, relay=[127.0.0.1], stat=not offered by the server, sending without" in caplog.text


def test_no_mechanism_in_common_defers_without_sending_auth(pki):
    with Smarthost(pki, exclude=("LOGIN",)) as host:
        outcome = deliver(pki, host.port, f'AuthInfo: "U:relay" "P:{PASSWORD}" "M:LOGIN CRAM-MD5"')
    assert outcome.reply.code == 454 and "no AUTH mechanism in common" in str(outcome.reply), outcome
    assert host.logins == [] and host.messages == []


def test_a_host_without_an_entry_is_not_asked(pki):
    with Smarthost(pki) as host:
        outcome = deliver(pki, host.port, f'AuthInfo:other.example "U:relay" "P:{PASSWORD}"\n'
                                          f'AuthInfo:192.0.2 "U:relay" "P:{PASSWORD}"')
    assert outcome.reply.code == 250 and host.logins == []


def test_the_server_name_and_its_parents_first(pki):
    with Smarthost(pki) as host:
        outcome = deliver(pki, host.port, f'AuthInfo:example.net "U:by-name" "P:{PASSWORD}"\n'
                                          f'AuthInfo:127.0.0.1 "U:by-address" "P:{PASSWORD}"',
                          name="smtp.relay.example.net")
    assert outcome.reply.code == 250 and host.logins == [("PLAIN", "by-name", PASSWORD)]
