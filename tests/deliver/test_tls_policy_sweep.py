"""The security property of the sending side, swept: a real `mailward serve` never sends a
MAIL command or a message to a host that its access map refuses, and always delivers where
the map does not object — for every route form (``esmtp:[addr]``, ``esmtp:host``, the
domain's MX) × access key form (``[addr]``, ``addr``, address prefix, host name, parent
domain, recipient domain, bare tag) × receiver kind (CA-signed, requesting a client
certificate, wrong CN, self-signed, no STARTTLS) × requirement (``VERIFY``, ``ENCR:112``,
``ENCR:512``, ``VERIFY+CN``, ``PERM+VERIFY``, ``Try_TLS NO``), and for ``TLS_Rcpt``.

What is expected is computed here from sendmail 8.17's rules as observed (which keys a
route's ${server_name} looks up; what each receiver's certificate gives), not from mailward's
code; what happened is read from the receivers' own records and from mailward's log.
"""

from __future__ import annotations

import pytest

from policy_run import all_routes, policy_lines, sender_settings, submit, to_lines, wait_results
from recorder import Place, places

KEY_FORMS = ("bracket", "addr", "prefix", "name", "parent", "domain", "bare")
REQUIREMENTS = ("VERIFY", "ENCR:112", "ENCR:512", "VERIFY+CN", "PERM+VERIFY", "Try_TLS NO")


def key(form: str, place: Place) -> str:
    return {"bracket": f"[{place.addr}]", "addr": place.addr, "prefix": "127.0.1", "name": place.host,
            "parent": "sweep.test", "domain": place.domain, "bare": ""}[form]


def matches(form: str, place: Place) -> bool:
    """Does sendmail look this key up for the place's ${server_name} and ${server_addr}?
    A bracketed route is looked up by its address only: a host name or domain no route
    names never applies; a name route and an MX host by name, its parents, then address."""
    if form in ("bracket", "addr", "prefix", "bare"):
        return True
    if form in ("name", "parent"):
        return place.form != "b"
    return place.form == "m"    # the recipient domain is a parent of its MX host's name only


def satisfied(requirement: str, place: Place) -> bool:
    verified = place.kind in ("ca", "reqcert", "wrongcn")     # a CA-signed chain; the CN is not VERIFY's business
    right_cn = place.kind in ("ca", "reqcert") and place.form != "b"   # CN = the host name, never "[addr]"
    return {"VERIFY": verified, "PERM+VERIFY": verified, "ENCR:112": place.kind != "plain",
            "ENCR:512": False, "VERIFY+CN": verified and right_cn}[requirement]


def access_map(tag: str, form: str, value: str) -> str:
    return "".join(sorted({f"{tag}:{key(form, p)} {value}\n" for p in places()}))


def rcpt(place: Place) -> str:
    return f"u@{place.domain}"


def run_sweep(make_mta, pki, dns_server, mx_port, tmp_path, receivers, access: str) -> str:
    for r in receivers.values():
        r.clear()
    mta = make_mta(sender_settings(pki, dns_server, mx_port, tmp_path, access, all_routes()))
    rcpts = [rcpt(p) for p in places()]
    submit(mta, rcpts)
    log = wait_results(mta, rcpts)
    mta.stop()
    return log


def assert_refused(receiver, place: Place, log: str, ruleset_lines: list[str]) -> None:
    """Not one MAIL, RCPT or byte of content; EHLO then QUIT (inside TLS after a handshake)."""
    assert not receiver.saw("MAIL") and not receiver.saw("RCPT") and not receiver.messages, place
    for conn in receiver.connections:
        assert conn.verbs() in (["EHLO", "QUIT"], ["EHLO", "STARTTLS", "~QUIT"]), (place, conn.verbs())
    assert any(f"relay={place.server_name}, reject=" in line for line in ruleset_lines), (place, ruleset_lines)


def assert_delivered(receiver, place: Place, tls: bool) -> None:
    assert len(receiver.messages) == 1, (place, [c.verbs() for c in receiver.connections])
    (conn,) = [c for c in receiver.connections if c.messages]
    mail = [t for line, t in conn.commands if line.upper().startswith("MAIL")]
    assert mail == [tls], (place, conn.verbs())
    assert receiver.saw("STARTTLS") == tls, (place, conn.verbs())
    if tls and place.kind == "reqcert":
        assert conn.client_cert is True, place      # a client certificate when one is asked for


@pytest.mark.parametrize("requirement", REQUIREMENTS)
@pytest.mark.parametrize("form", KEY_FORMS)
def test_tls_srv_and_try_tls_sweep(make_mta, pki, dns_server, mx_port, tmp_path, receivers, form, requirement):
    if requirement == "Try_TLS NO":
        access = access_map("Try_TLS", form, "NO")
    else:
        access = access_map("TLS_Srv", form, requirement)
    log = run_sweep(make_mta, pki, dns_server, mx_port, tmp_path, receivers, access)
    server_refusals = policy_lines(log, "tls_server")
    try_notices = policy_lines(log, "try_tls")
    for place in places():
        receiver = receivers[place.addr]
        line = to_lines(log, rcpt(place))[0]
        hit = matches(form, place)
        if requirement == "Try_TLS NO":
            offered = place.kind != "plain"
            assert_delivered(receiver, place, tls=offered and not hit)
            notice = [n for n in try_notices if f"relay={place.server_name}, " in n]
            assert bool(notice) == (hit and offered), (place, try_notices)
            if notice:
                assert notice[0] == (f"ruleset=try_tls, arg1={place.server_name}, relay={place.server_name}, "
                                     f"reject=550 5.7.1 {rcpt(place)}... do not try TLS with "
                                     f"{place.server_name} [{place.addr}]")
            assert "stat=Sent (2.0.0 Ok: queued as R" in line, line
        elif hit and not satisfied(requirement, place):
            assert_refused(receiver, place, log, server_refusals)
            if requirement.startswith("PERM+"):
                assert "dsn=5.7.0, stat=" in line, line      # bounced at once, no retry
            else:
                assert "dsn=4.7.0, stat=Deferred: 454 4.7.0 " in line, line
        else:
            assert_delivered(receiver, place, tls=place.kind != "plain")
            assert "stat=Sent (2.0.0 Ok: queued as R" in line, line
            assert not any(f"relay={place.server_name}, " in x for x in server_refusals), (place, server_refusals)


RCPT_FORMS = {"full": "u@{domain}", "user": "u@", "domain": "{domain}", "parent": "test", "bare": ""}


@pytest.mark.parametrize("form", sorted(RCPT_FORMS))
def test_tls_rcpt_sweep(make_mta, pki, dns_server, mx_port, tmp_path, receivers, form):
    """TLS_Rcpt: checked after MAIL, before RCPT; a refused recipient is never named to the
    host and its content never sent: the host sees MAIL then RSET."""
    access = "".join(sorted({f"TLS_Rcpt:{RCPT_FORMS[form].format(domain=p.domain)} VERIFY\n" for p in places()}))
    log = run_sweep(make_mta, pki, dns_server, mx_port, tmp_path, receivers, access)
    refusals = policy_lines(log, "tls_rcpt")
    for place in places():
        receiver = receivers[place.addr]
        line = to_lines(log, rcpt(place))[0]
        if place.kind in ("ca", "reqcert", "wrongcn"):
            assert_delivered(receiver, place, tls=True)
            continue
        assert not receiver.saw("RCPT") and not receiver.messages, (place, [c.verbs() for c in receiver.connections])
        verbs = [v.lstrip("~") for c in receiver.connections for v in c.verbs()]
        assert "MAIL" in verbs and verbs[verbs.index("MAIL") + 1] == "RSET", (place, verbs)
        assert f"ruleset=tls_rcpt, arg1={rcpt(place)}, relay={place.server_name}, reject=454 4.7.0 " in \
            "\n".join(refusals), (place, refusals)
        assert "dsn=4.7.0, stat=Deferred: 454 4.7.0 " in line, line
