"""500 hostile connections (slowloris, handshakes never finished, one byte a second) from
many addresses: normal clients still get through, hostile ones time out, per-address limits
hold. Bounded: about 10 seconds."""

from __future__ import annotations

import smtplib
import socket
import ssl
import threading
import time

from tests.conftest import tls_settings


def test_normal_clients_get_through_a_flood(make_mta, pki):
    mta = make_mta({"tls": tls_settings(pki),
                    "server": {"idle_timeout": 4, "tls_handshake_timeout": 4, "max_connections_per_client": 10,
                               "client_limit_exceptions": [], "max_connections": 2000, "reverse_lookup": False}})
    hostile: list[socket.socket] = []
    for i in range(500):
        src = f"127.0.{1 + i // 250}.{1 + (i // 10) % 25}"  # 50 addresses, 10 connections each
        s = socket.socket()
        s.bind((src, 0))
        s.settimeout(5)
        s.connect((mta.host, mta.port))
        hostile.append(s)
    # a third never speaks, a third starts STARTTLS and stalls mid-handshake, a third dribbles
    for i, s in enumerate(hostile):
        if i % 3 == 1:
            s.sendall(b"EHLO x\r\n")
        elif i % 3 == 2:
            s.sendall(b"E")
    time.sleep(0.3)
    for i, s in enumerate(hostile):
        if i % 3 == 1:
            s.sendall(b"STARTTLS\r\n")  # after the EHLO reply: RFC 2920 §3.1
    time.sleep(0.3)
    for i, s in enumerate(hostile):
        if i % 3 == 1:
            s.sendall(b"\x16\x03\x01\x02\x00\x01")  # a ClientHello that never completes

    # dribblers: one byte every half second, never a whole line
    stop = threading.Event()

    def dribble():
        while not stop.is_set():
            for i, s in enumerate(hostile):
                if i % 3 == 2:
                    try:
                        s.send(b"x")
                    except OSError:
                        pass
            time.sleep(0.5)
    threading.Thread(target=dribble, daemon=True).start()

    # an 11th connection from one hostile address is refused
    extra = socket.socket()
    extra.bind(("127.0.1.1", 0))
    extra.connect((mta.host, mta.port))
    extra.settimeout(5)
    assert extra.recv(200).startswith(b"421 4.7.0")
    extra.close()

    # normal clients complete full TLS sessions meanwhile
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    start = time.time()
    for n in range(5):
        with smtplib.SMTP(mta.host, mta.port, timeout=10) as c:
            c.starttls(context=ctx)
            c.sendmail("a@b.example", ["normal@localhost"], f"Subject: {n}\r\n\r\nok\r\n")
    assert time.time() - start < 5
    assert len(mta.wait_mail("normal", 5)) == 5

    # the hostile ones are timed out by the server, dribblers included
    time.sleep(4.5)
    stop.set()
    closed = 0
    for s in hostile:
        s.settimeout(0.5)
        try:
            data = b""
            while chunk := s.recv(4096):
                data += chunk
            closed += 1
        except (socket.timeout, TimeoutError):
            pass
        except ConnectionResetError:
            closed += 1
        s.close()
    assert closed >= 495, closed
