"""SMTP AUTH and submission attacked as a hostile client would, against a real ``mailward
serve`` (mx, submission and submissions listeners on free loopback ports) and a users file
made by the real ``mailward user add``: AUTH before TLS on every role, plaintext pipelined
behind STARTTLS (RFC 3207 §4.2), malformed exchanges, SCRAM replays, brute force across
connections, addresses and reloads, timing, the log, the rate limit, the sender login map,
the AUTH= parameter and EXTERNAL with certificates that must not authenticate.

Each client here is a raw socket (ssl for TLS) so that the bytes and their timing are the
test's, not a library's. Figures (EHLO latency under attack, unknown-user vs wrong-password
times) are printed; ``pytest -s`` shows them."""

from __future__ import annotations

import base64
import re
import socket
import time
from pathlib import Path

import pytest
from scramp import ScramClient

from tests.submission.conftest import (
    USERS,
    make_submission,
    spooled_envelope,
)

from tests.submission import attack_kit
from tests.submission.attack_kit import (
    ALICE,
    CAROL_STORED,
    MSG,
    Raw,
    auth_plain,
    b64,
    implicit,
    plain,
    tls,
)

# the shared module-scoped fixtures (a users file, a running server), made once per module
users = attack_kit.users
srv = attack_kit.srv


# ---- AUTH and TLS ---------------------------------------------------------------------------

def test_auth_before_tls_on_every_role(srv, pki):
    with Raw(srv.mx) as c:
        assert "AUTH" not in c.ehlo()
        assert c.cmd(f"AUTH PLAIN {plain('alice', ALICE)}") == \
            (538, "5.7.11 Encryption required for requested authentication mechanism")
        assert c.cmd("AUTH LOGIN")[0] == 538
    with Raw(srv.submission) as c:
        assert "AUTH" not in c.ehlo()
        for command in (f"AUTH PLAIN {plain('alice', ALICE)}", "AUTH LOGIN", "MAIL FROM:<alice@example.org>"):
            assert c.cmd(command) == (530, "5.7.0 Must issue a STARTTLS command first")
        assert c.cmd("RCPT TO:<user@localhost>")[0] == 503
        assert c.cmd("DATA")[0] == 503
    # submissions: plaintext is a failed handshake, never a greeting and never AUTH
    with socket.create_connection((srv.host, srv.submissions), timeout=10) as raw:
        raw.sendall(f"EHLO c\r\nAUTH PLAIN {plain('alice', ALICE)}\r\n".encode())
        assert not raw.recv(1024).startswith(b"220")
    # MAIL, RCPT and DATA under TLS but without AUTH, on both submission roles
    starttls = Raw(srv.submission)
    starttls.ehlo()
    starttls.starttls(tls(pki))
    starttls.ehlo()
    for c in (implicit(srv, pki), starttls):
        with c:
            assert c.cmd("MAIL FROM:<alice@example.org>") == (530, "5.7.0 Authentication required")
            assert c.cmd("RCPT TO:<user@localhost>")[0] == 503
            assert c.cmd("DATA")[0] == 503
    assert "AUTH=server" not in srv.mta.log_text()


def test_auth_after_a_refused_or_aborted_starttls(srv, pki):
    for port, refusal in ((srv.mx, 538), (srv.submission, 530)):
        with Raw(port) as c:
            c.ehlo()
            assert c.cmd("STARTTLS now")[0] == 501            # refused: still in clear
            assert c.cmd(f"AUTH PLAIN {plain('alice', ALICE)}")[0] == refusal
    offset = len(srv.mta.log_text())
    for port in (srv.mx, srv.submission):
        with Raw(port) as c:   # 220, then plaintext instead of a ClientHello: the handshake fails
            c.ehlo()
            assert c.cmd("STARTTLS")[0] == 220
            c.send(f"EHLO c\r\nAUTH PLAIN {plain('alice', ALICE)}\r\nMAIL FROM:<a@example.org>\r\n".encode())
            data = b""
            try:
                while chunk := c.sock.recv(4096):
                    data += chunk
            except OSError:
                pass
            assert b"235" not in data and b"250" not in data and b"334" not in data
    log = srv.mta.wait_log("accept failed")
    assert "AUTH=server" not in log[offset:]


@pytest.mark.parametrize("role", ["mx", "submission"])
def test_auth_pipelined_behind_starttls_is_never_run(srv, pki, role):
    """RFC 3207 §4.2: what the client sent in clear behind STARTTLS is discarded; the
    credentials in it are never checked, let alone accepted, inside TLS."""
    port = srv.mx if role == "mx" else srv.submission
    offset = len(srv.mta.log_text())
    with Raw(port) as c:
        c.ehlo()
        c.send(f"STARTTLS\r\nAUTH PLAIN {plain('alice', ALICE)}\r\nMAIL FROM:<alice@example.org>\r\n"
               f"RCPT TO:<x@remote.test>\r\n".encode())
        assert c.reply()[0] == 220
        c.sock = tls(pki).wrap_socket(c.sock, server_hostname="localhost")
        assert "AUTH SCRAM-SHA-256 PLAIN LOGIN" in c.ehlo()           # AUTH still to be done
        code, text = c.cmd("MAIL FROM:<alice@example.org>")
        if role == "submission":
            assert (code, text) == (530, "5.7.0 Authentication required")
        else:
            assert code == 250
            assert c.cmd("RCPT TO:<x@remote.test>")[0] == 250   # 127.0.0.1 relays: not a proof of AUTH
        log = srv.mta.log_text()[offset:]
        assert "AUTH=server" not in log and "AUTH failure" not in log
        assert c.cmd("AUTH PLAIN " + plain("alice", ALICE))[0] == (503 if role == "mx" else 235)


def test_relaying_on_mx_needs_a_successful_auth(srv, pki):
    """From 127.0.0.2 (127.0.0.1 relays as in sendmail): no relaying in clear, none after a
    failed or cancelled AUTH under TLS, relaying after a successful one (documented)."""
    with Raw(srv.mx, source="127.0.0.2") as c:
        c.ehlo()
        assert c.cmd(f"AUTH PLAIN {plain('alice', ALICE)}")[0] == 538
        assert c.cmd("MAIL FROM:<a@client.test>")[0] == 250
        assert c.cmd("RCPT TO:<x@remote.test>") == (550, "5.7.1 <x@remote.test>... Relaying denied")
    with Raw(srv.mx, source="127.0.0.2") as c:
        c.ehlo()
        c.starttls(tls(pki))
        c.ehlo()
        assert auth_plain(c, "alice", "wrong")[0] == 535
        assert c.cmd("AUTH LOGIN " + b64("alice"))[0] == 334
        assert c.cmd("*")[0] == 501
        assert c.cmd("MAIL FROM:<alice@example.org>")[0] == 250
        assert c.cmd("RCPT TO:<x@remote.test>")[0] == 550
        assert c.cmd("RSET")[0] == 250
        assert auth_plain(c, "alice", ALICE)[0] == 235
        assert c.cmd("MAIL FROM:<alice@example.org>")[0] == 250
        assert c.cmd("RCPT TO:<x@remote.test>")[0] == 250


# ---- malformed exchanges ------------------------------------------------------------------

def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_huge_lines_are_refused_with_bounded_memory(srv, pki):
    pid = srv.mta.proc.pid
    with implicit(srv, pki) as c:
        before = rss_kib(pid)
        chunk = b"A" * 65536
        c.send(b"AUTH PLAIN ")
        for _ in range(320):                       # 20 MiB of base64 on one line
            c.send(chunk)
        c.send(b"\r\n")
        assert c.reply() == (500, "5.5.6 Authentication Exchange line is too long")
        grown = rss_kib(pid) - before
        print(f"\nRSS growth after a 20 MiB AUTH line: {grown} KiB")
        assert grown < 8 * 1024, grown
        assert c.cmd("AUTH PLAIN " + "A" * 13000)[0] == 500     # over RFC 4954's 12288
        assert c.cmd("AUTH PLAIN")[0] == 334                    # inside the exchange too
        c.send(b"QUFB" * 4096 + b"\r\n")
        assert c.reply() == (500, "5.5.6 Authentication Exchange line is too long")
        assert c.cmd("NOOP")[0] == 250
        assert auth_plain(c, "alice", ALICE)[0] == 235


def test_malformed_exchanges(srv, pki):
    with implicit(srv, pki) as c:
        assert c.cmd("AUTH CRAM-MD5")[0] == 504
        assert c.cmd("AUTH PLA\u0131N " + plain("alice", ALICE))[0] == 504   # dotless i upper-cases to I
        assert c.cmd("AUTH \u017fCRAM-SHA-256")[0] == 504                   # long s upper-cases to S
        assert c.cmd("AUTH PLAIN %%%")[0] == 501
        assert c.cmd("AUTH PLAIN AGFsaWNl=AA")[0] == 501                      # '=' inside
        assert c.cmd("AUTH PLAIN =") == (535, "5.7.8 Authentication credentials invalid")   # empty message
        assert c.cmd("AUTH PLAIN " + b64("\0alice\0" + ALICE + "\0x"))[0] == 535          # a third NUL
        assert c.cmd("AUTH PLAIN " + b64("\0alice\0"))[0] == 535                          # no password
        assert c.cmd("AUTH PLAIN " + b64("bob\0alice\0" + ALICE))[0] == 535               # acting as bob
        assert c.cmd("AUTH PLAIN " + b64(b"\0alice\0\xff\xfe"))[0] == 535                 # not UTF-8
        assert c.cmd("AUTH PLAIN a b c")[0] == 501
        assert c.cmd("AUTH LOGIN " + b64("ali\0ce"))[0] == 334                           # a NUL in LOGIN's name
        assert c.cmd(b64(ALICE))[0] == 535
        assert c.cmd("AUTH LOGIN " + b64("alice"))[0] == 334                               # ... and password
        assert c.cmd(b64(ALICE + "\0"))[0] == 535
        # '*' at every step
        assert c.cmd("AUTH PLAIN") == (334, "")
        assert c.cmd("*") == (501, "5.0.0 AUTH aborted")
        assert c.cmd("AUTH LOGIN")[0] == 334
        assert c.cmd("*")[0] == 501
        assert c.cmd("AUTH LOGIN " + b64("alice")) == (334, b64("Password:"))
        assert c.cmd("*")[0] == 501
        assert c.cmd("AUTH LOGIN =")[0] == 334                  # an empty user name ...
        assert c.cmd(b64("x"))[0] == 535                        # ... fails
        client = ScramClient(["SCRAM-SHA-256"], "alice", ALICE)
        code, first = c.cmd("AUTH SCRAM-SHA-256 " + b64(client.get_client_first()))
        assert code == 334
        client.set_server_first(base64.b64decode(first).decode())
        assert c.cmd("*")[0] == 501
        # '*' after the server-final message: the proof was right, but the client cancelled
        client = ScramClient(["SCRAM-SHA-256"], "alice", ALICE)
        code, first = c.cmd("AUTH SCRAM-SHA-256 " + b64(client.get_client_first()))
        client.set_server_first(base64.b64decode(first).decode())
        code, final = c.cmd(b64(client.get_client_final()))
        assert code == 334
        client.set_server_final(base64.b64decode(final).decode())
        assert c.cmd("*")[0] == 501
        assert c.cmd("MAIL FROM:<alice@example.org>")[0] == 530          # still not authenticated
        assert c.cmd("auth plain " + plain("alice", ALICE))[0] == 235    # lower case is fine


def test_saslprep_of_passwords(srv, pki):
    """RFC 4013: carol's password was stored as 'I<SOFT HYPHEN>X carol'; its SASLprep form
    'IX carol', and '<ROMAN NUMERAL NINE> carol' (NFKC: 'IX'), are the same password; with
    an EM SPACE for the space too (non-ASCII spaces map to SPACE)."""
    for password in ("IX carol", "\u2168 carol", "IX\u2003carol", CAROL_STORED):
        with implicit(srv, pki) as c:
            assert auth_plain(c, "carol", password)[0] == 235, password
    for password in ("ix carol", "IXcarol", "I X carol"):
        with implicit(srv, pki) as c:
            assert auth_plain(c, "carol", password)[0] == 535, password
    for password in ("IX carol", "\u2168 carol"):
        with implicit(srv, pki) as c:
            client = ScramClient(["SCRAM-SHA-256"], "carol", password)
            code, first = c.cmd("AUTH SCRAM-SHA-256 " + b64(client.get_client_first()))
            client.set_server_first(base64.b64decode(first).decode())
            code, final = c.cmd(b64(client.get_client_final()))
            assert code == 334, (password, final)
            client.set_server_final(base64.b64decode(final).decode())
            assert c.cmd("")[0] == 235
    with implicit(srv, pki) as c:   # a user name is not folded: case and NFKC matter
        assert auth_plain(c, "Carol", "IX carol")[0] == 535
        assert auth_plain(c, "c\u0430rol", "IX carol")[0] == 535      # CYRILLIC a


def scram_round(c: Raw, user: str, password: str) -> tuple[ScramClient, str, str]:
    """client-first → server-first; the client and both messages."""
    client = ScramClient(["SCRAM-SHA-256"], user, password)
    first = client.get_client_first()
    code, server_first = c.cmd("AUTH SCRAM-SHA-256 " + b64(first))
    assert code == 334
    server_first = base64.b64decode(server_first).decode()
    client.set_server_first(server_first)
    return client, first, server_first


def test_scram_wrong_nonce_and_replayed_final(srv, pki):
    with implicit(srv, pki) as c:
        client, first, server_first = scram_round(c, "alice", ALICE)
        final = client.get_client_final()
        # the server's part of the nonce changed: the proof is for another exchange
        nonce = re.search(r"r=([^,]+)", final).group(1)
        assert c.cmd(b64(final.replace(nonce, nonce[:-4] + "AAAA")))[0] == 535
    with implicit(srv, pki) as c:
        client, first, server_first = scram_round(c, "alice", ALICE)
        recorded = client.get_client_final()
        code, server_final = c.cmd(b64(recorded))
        assert code == 334
        assert c.cmd("")[0] == 235
    with implicit(srv, pki) as c:     # the recorded client-final, replayed into a new exchange
        assert c.cmd("AUTH SCRAM-SHA-256 " + b64(first))[0] == 334
        assert c.cmd(b64(recorded)) == (535, "5.7.8 Authentication credentials invalid")
    with implicit(srv, pki) as c:     # data after the server-final message
        client, first, server_first = scram_round(c, "alice", ALICE)
        assert c.cmd(b64(client.get_client_final()))[0] == 334
        assert c.cmd(b64("extra"))[0] == 535
        assert c.cmd("MAIL FROM:<alice@example.org>")[0] == 530




# ---- the log -------------------------------------------------------------------------------

@pytest.mark.parametrize("json_log", [False, True], ids=["text", "json"])
def test_no_credential_in_any_log_line(make_mta, pki, users, json_log):
    """Every mechanism and failure kind, credentials sent out of turn, pipelined behind EHLO
    and before the greeting; the log at level debug, as text and as JSON (which carries the
    bytes a pipelining client sent): no password, no base64 of one, in any case."""
    s = make_submission(make_mta, pki, users, submission={"auth_failure_delay": 0.0, "max_auth_failures": 1000},
                        log={"level": "debug", "json": json_log})
    secret = "Hunter2-secret-XYZ"
    encoded = [b64(secret), plain("alice", secret), plain("nobody", secret), b64("\0alice\0" + secret)[8:]]
    # whole or cut (a log field may keep only the start of a word), in any case
    forms = {secret} | {e.rstrip("=") for e in encoded} | {e[:12] for e in encoded}
    with implicit(s, pki) as c:
        assert auth_plain(c, "alice", secret)[0] == 535                # wrong password
        assert auth_plain(c, "nobody", secret)[0] == 535               # unknown user
        assert c.cmd("AUTH PLAIN " + b64("\0alice\0" + secret + "\0"))[0] == 535   # malformed
        assert c.cmd("AUTH PLAIN " + b64("bob\0alice\0" + secret))[0] == 535       # authzid
        assert c.cmd("AUTH PLAIN " + b64(secret))[0] == 535                         # no NUL at all
        assert c.cmd("AUTH LOGIN " + b64("alice"))[0] == 334
        assert c.cmd(b64(secret))[0] == 535
        assert c.cmd("AUTH LOGIN " + b64("alice"))[0] == 334
        assert c.cmd("*")[0] == 501
        client = ScramClient(["SCRAM-SHA-256"], "alice", secret)
        code, first = c.cmd("AUTH SCRAM-SHA-256 " + b64(client.get_client_first()))
        client.set_server_first(base64.b64decode(first).decode())
        assert c.cmd(b64(client.get_client_final()))[0] == 535
        # a client that does not wait: its credentials arrive as commands after a 504
        assert c.cmd("AUTH CRAM-MD5")[0] == 504
        assert c.cmd(b64(secret))[0] == 500
        assert c.cmd(plain("alice", secret))[0] == 500
    with Raw(s.mx) as c:            # in clear: 538, and the credentials as a command after it
        c.ehlo()
        assert c.cmd("AUTH LOGIN " + b64("alice"))[0] == 538
        assert c.cmd(b64(secret))[0] == 500
    with Raw(s.submissions, tls(pki)) as c:    # AUTH pipelined behind EHLO
        c.send(f"EHLO client.test\r\nAUTH PLAIN {plain('alice', secret)}\r\n".encode())
        c.reply()
        c.reply()
    with Raw(s.submission, greet=False) as c:   # ... and before the greeting
        c.send(f"EHLO client.test\r\nAUTH PLAIN {plain('alice', secret)}\r\n".encode())
        c.reply()
    time.sleep(0.5)
    log = s.mta.log_text()
    assert "SMTP protocol error" in log, log
    if json_log:    # the bytes after EHLO, with the credentials left out
        assert "AUTH PLAIN [rest not logged]" in log, log
    leaks = [line for line in log.splitlines() if any(form.lower() in line.lower() for form in forms)]
    assert not leaks, "\n".join(leaks)


# ---- what an authenticated client may do --------------------------------------------------

def send_message(c: Raw, sender: str, rcpt: str = "user@localhost", params: str = "") -> tuple[int, str]:
    code, text = c.cmd(f"MAIL FROM:<{sender}>{params}")
    if code != 250:
        return code, text
    assert c.cmd(f"RCPT TO:<{rcpt}>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(MSG + b".\r\n")
    return c.reply()


def test_rate_limit_per_user_across_connections(make_mta, pki, users):
    s = make_submission(make_mta, pki, users, submission={"rate_limit_messages": 2})
    for port in ("submissions", "submission"):
        with implicit(s, pki) if port == "submissions" else Raw(s.submission) as c:
            if port == "submission":
                c.ehlo()
                c.starttls(tls(pki))
                c.ehlo()
            assert auth_plain(c, "alice", ALICE)[0] == 235
            assert send_message(c, "alice@example.org")[0] == 250
    with implicit(s, pki) as c:
        assert auth_plain(c, "alice", ALICE)[0] == 235
        assert c.cmd("MAIL FROM:<alice@example.org>") == (450, "4.7.1 Rate limit exceeded, try again later")
    with Raw(s.mx) as c:            # on the mx port too, after AUTH
        c.ehlo()
        c.starttls(tls(pki))
        c.ehlo()
        assert auth_plain(c, "alice", ALICE)[0] == 235
        assert c.cmd("MAIL FROM:<alice@example.org>")[0] == 450
    with implicit(s, pki) as c:     # bob has his own count
        assert auth_plain(c, "bob", USERS["bob"])[0] == 235
        assert send_message(c, "bob@example.org")[0] == 250


def test_rate_limit_holds_against_parallel_connections(make_mta, pki, users):
    """A stolen password used from many connections at once: MAIL holds a place in the user's
    rate until the message is accepted or the transaction ends, so parallel transactions get
    no more messages through than submission.rate_limit_messages."""
    s = make_submission(make_mta, pki, users, server={"max_connections_per_client": 20},
                        submission={"rate_limit_messages": 2})
    clients = [implicit(s, pki) for _ in range(6)]
    for c in clients:
        assert auth_plain(c, "alice", ALICE)[0] == 235
    codes = [c.cmd("MAIL FROM:<alice@example.org>")[0] for c in clients]
    accepted = 0
    for c, code in zip(clients, codes):
        if code == 250:
            assert c.cmd("RCPT TO:<user@localhost>")[0] == 250
            assert c.cmd("DATA")[0] == 354
            c.send(MSG + b".\r\n")
            accepted += c.reply()[0] == 250
    print(f"\n6 parallel transactions, rate_limit_messages=2: MAIL replies {codes}, {accepted} accepted")
    assert accepted == 2 and sorted(codes) == [250, 250, 450, 450, 450, 450], codes
    # a transaction that ends without a message gives its place back
    with implicit(s, pki) as c:
        assert auth_plain(c, "bob", USERS["bob"])[0] == 235
        assert c.cmd("MAIL FROM:<bob@example.org>")[0] == 250
        assert c.cmd("RSET")[0] == 250
        assert c.cmd("MAIL FROM:<bob@example.org>")[0] == 250
    with implicit(s, pki) as c:     # the places held by RSET and by the client that left are free
        assert auth_plain(c, "bob", USERS["bob"])[0] == 235
        assert send_message(c, "bob@example.org")[0] == 250
        assert send_message(c, "bob@example.org")[0] == 250
        assert c.cmd("MAIL FROM:<bob@example.org>")[0] == 450
    for c in clients:
        c.close()


def test_sender_login_map_case_and_domains(make_mta, pki, users, tmp_path):
    logins = tmp_path / "logins"
    logins.write_text("Alice@Example.ORG  alice\n@EXAMPLE.net  bob\nshared@example.org  Alice\n")
    s = make_submission(make_mta, pki, users, submission={"sender_login_map": str(logins)})
    with implicit(s, pki) as c:
        assert auth_plain(c, "alice", ALICE)[0] == 235
        for sender, code in (("alice@example.org", 250), ("ALICE@EXAMPLE.ORG", 250), ("alice@Example.Org", 250),
                             ("alice@example.org.", 553), ("alice@sub.example.org", 553),
                             ("alice\\@example.org", 553), ("x@example.net", 553),
                             ("shared@example.org", 553),      # the map names Alice: user names are exact
                             ("\"alice\"@example.org", 553), ("bob@example.org", 553)):
            got = c.cmd(f"MAIL FROM:<{sender}>")
            assert got[0] in (code, 501), (sender, got)
            if code == 553:
                assert got[0] != 250, (sender, got)
            c.cmd("RSET")
        assert c.cmd("MAIL FROM:<>")[0] == 250
        c.cmd("RSET")
        kept = {}
        for claim in ("alice+40example.org", "ALICE+40EXAMPLE.ORG", "bob+40example.org", "alice"):
            code, text = send_message(c, "alice@example.org", "x@remote.test", f" AUTH={claim}")
            assert code == 250, text
            kept[claim] = spooled_envelope(s.mta, text.split()[1])["sender_params"]["AUTH"]
        # with a map, the map says what the user owns (its login name alone is no address)
        assert kept == {"alice+40example.org": "alice+40example.org", "ALICE+40EXAMPLE.ORG": "ALICE+40EXAMPLE.ORG",
                        "bob+40example.org": "<>", "alice": "<>"}
    with implicit(s, pki) as c:
        assert auth_plain(c, "bob", USERS["bob"])[0] == 235
        for sender, code in (("x@example.net", 250), ("X@EXAMPLE.NET", 250), ("x@sub.example.net", 553),
                             ("x@example.network", 553), ("alice@example.org", 553)):
            assert c.cmd(f"MAIL FROM:<{sender}>")[0] == code, sender
            c.cmd("RSET")
    s.mta.kill9()   # its messages wait for a next hop that never answers


def test_auth_parameter_is_not_a_free_claim(srv, pki):
    """RFC 4954 §5: without a sender login map the server has no ground to trust a claimed
    AUTH=<mailbox> other than the user's own login name (sendmail's default trust_auth)."""
    with implicit(srv, pki) as c:
        assert auth_plain(c, "alice", ALICE)[0] == 235
        kept = {}
        for claim in ("ceo+40example.org", "alice", "<>"):
            code, text = send_message(c, "alice@example.org", "x@remote.test", f" AUTH={claim}")
            assert code == 250, text
            kept[claim] = spooled_envelope(srv.mta, text.split()[1])["sender_params"]["AUTH"]
    assert kept == {"ceo+40example.org": "<>", "alice": "alice", "<>": "<>"}


# ---- EXTERNAL ------------------------------------------------------------------------------

def test_external_needs_a_verified_certificate_of_a_known_user(make_mta, pki, users, users_file):
    """A certificate that does not verify (self-signed, another CA) never offers EXTERNAL;
    one that verifies authenticates only as a user the users file knows — a CA in tls.ca_file
    (public roots, for instance) vouches for a name, not for an account."""
    s = make_submission(make_mta, pki, users, submission={"external_identity": "cn"},
                        auth={"mechanisms": ["PLAIN", "EXTERNAL"]})
    for cert, key in ((pki.selfsigned_cert, pki.selfsigned_key), (pki.other_cert, pki.other_key)):
        with Raw(s.submissions, tls(pki, cert, key)) as c:
            assert "AUTH PLAIN\n" in c.ehlo() + "\n"
            assert c.cmd("AUTH EXTERNAL =")[0] == 504
            assert c.cmd("AUTH EXTERNAL " + b64(cert.stem))[0] == 504
        with Raw(s.submission) as c:
            c.ehlo()
            c.starttls(tls(pki, cert, key))
            assert c.ehlo().endswith("AUTH PLAIN\nHELP")
            assert c.cmd("AUTH EXTERNAL =")[0] == 504
    with Raw(s.submissions, tls(pki, pki.client_cert, pki.client_key)) as c:   # client.test is a user
        c.ehlo()
        assert c.cmd("AUTH EXTERNAL =") == (235, "2.7.0 Authentication successful")
    # the same certificate where client.test is not a user: a name, not an account
    t = make_submission(make_mta, pki, users_file, submission={"external_identity": "cn"},
                        auth={"mechanisms": ["PLAIN", "EXTERNAL"]})
    with Raw(t.submissions, tls(pki, pki.client_cert, pki.client_key)) as c:
        c.ehlo()
        assert c.cmd("AUTH EXTERNAL =") == (535, "5.7.8 Authentication credentials invalid")
        assert c.cmd("MAIL FROM:<a@client.test>")[0] == 530
    assert "(EXTERNAL: identity=client.test: unknown user)" in t.mta.wait_log("AUTH failure (EXTERNAL)")


def test_address_key_counts_ipv6_by_network():
    """What the failure limit counts: IPv4 alone (also IPv4-mapped), IPv6 by its /64."""
    from mailward.receive.auth_limits import address_key

    assert address_key("192.0.2.1") == address_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert address_key("2001:db8:1:2::1") == address_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("2001:db8::1", 128) == "2001:db8::1"
    assert address_key("fe80::1%eth0") == "fe80::/64"
    assert address_key("not an address") == "not an address"


def test_bytes_logged_for_a_pipelining_client_leave_credentials_out():
    """What the core hands the log as the bytes a client sent out of turn (seen=)."""
    from mailward.smtp.server_auth import without_credentials

    assert without_credentials(b"AUTH PLAIN AGFsaWNlAHB3\r\nMAIL FROM:<a@b>\r\n") == b"AUTH PLAIN [rest not logged]"
    assert without_credentials(b"NOOP\r\nauth\tlogin\r\ndXNlcg==\r\ncGFzcw==\r\n") == \
        b"NOOP\r\nauth login [rest not logged]"
    assert without_credentials(b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n") == b"MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n"
    assert without_credentials(b"AUTHX y") == b"AUTHX y"
