"""The client core against the server core, both without I/O: a pipelined transaction whose
bytes are checked on the wire, and a configuration mistake in the delivery settings."""

from __future__ import annotations

import subprocess
import sys

from mailward.config import default_config_text
from mailward.smtp import client as C
from mailward.smtp import events as ev
from mailward.smtp.server import ServerConnection


def pump(client: C.ClientConnection, server: ServerConnection, transcript: list, received: list):
    """Move bytes both ways until neither side has anything to say; answer server decisions."""
    for _ in range(50):
        out = client.data_to_send()
        if out:
            transcript.append(("C", out))
            server.receive_data(out)
        while True:
            e = server.next_event()
            if e in (ev.NEED_DATA, ev.PAUSED):
                break
            if isinstance(e, ev.DataChunk):
                received.append(e.data)
            if isinstance(e, (ev.MailFrom, ev.RcptTo, ev.DataRequested, ev.DataComplete)):
                server.respond(None)
        back = server.data_to_send()
        if back:
            transcript.append(("S", back))
            client.receive_data(back)
        event = client.next_event()
        if event not in (C.NEED_DATA, C.WAITING):
            return event
        if not out and not back:
            return event


def test_pipelined_dialogue_between_the_cores():
    server = ServerConnection("mx.test", "client [127.0.0.1]")
    server.greet("mx.test ESMTP mailward")
    client = C.ClientConnection("client.test")
    transcript, received = [], []
    client.receive_data(server.data_to_send())
    assert isinstance(client.next_event(), C.Greeting)
    ready = pump(client, server, transcript, received)
    assert isinstance(ready, C.Ready) and "PIPELINING" in ready.extensions and "DSN" in ready.extensions
    message = b"Subject: x\r\n\r\n.one\r\n..two\r\n.\r\n"
    client.send_transaction(C.Transaction("a@client.test", (("u@mx.test", {"NOTIFY": "SUCCESS"}),),
                                          {"BODY": "8BITMIME"}, len(message)))
    send = pump(client, server, transcript, received)
    assert isinstance(send, C.SendContent)
    # one write for MAIL, RCPT and DATA (RFC 2920), parameters kept because the server has DSN
    assert transcript[-2] == ("C", f"MAIL FROM:<a@client.test> SIZE={len(message)} BODY=8BITMIME\r\n"
                                   "RCPT TO:<u@mx.test> NOTIFY=SUCCESS\r\nDATA\r\n".encode())
    client.send_content(message)
    client.end_content()
    done = pump(client, server, transcript, received)
    assert isinstance(done, C.TransactionDone) and done.result.outcome(0).code == 250
    assert b"".join(received) == message


def test_broken_route_file_stops_serve_with_file_and_line(tmp_path):
    routes = tmp_path / "routes"
    routes.write_text("example.com [smart.example\n")
    config = tmp_path / "mailward.toml"
    config.write_text(default_config_text({"delivery": {"route_file": str(routes)},
                                           "server": {"listen": ["127.0.0.1:1"]}}))
    out = subprocess.run([sys.executable, "-m", "mailward", "serve", "-c", str(config)], capture_output=True,
                         text=True, timeout=30, cwd=tmp_path)
    assert out.returncode == 2
    assert f"{routes}:1: unbalanced brackets" in out.stderr
