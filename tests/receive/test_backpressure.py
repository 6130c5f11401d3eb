"""A client that pipelines commands and never reads the replies must not grow the server:
reading stops while replies wait to be written, and the command timeout ends the session.
Bounded: about 15 seconds."""

from __future__ import annotations

import socket
import threading
import time

from tests.receive.test_attacks_and_bad_input import read_reply, still_serving


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_client_that_never_reads_cannot_grow_the_server(make_mta):
    mta = make_mta({"server": {"idle_timeout": 6, "reverse_lookup": False}})
    pid = mta.proc.pid  # workers = 1: this process holds the connection
    still_serving(mta)  # warm up (first connection, first replies)
    before = rss_kb(pid)

    s = socket.create_connection((mta.host, mta.port), timeout=5)
    read_reply(s)
    s.setblocking(False)
    burst = b"HELP\r\n" * 2000  # each HELP gets 130 octets of reply: 20 times its size
    sent, ended, peak = 0, False, before
    stop = time.time() + 15

    def sample():
        nonlocal peak
        while time.time() < stop and not ended:
            peak = max(peak, rss_kb(pid))
            time.sleep(0.1)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    while time.time() < stop:
        try:
            sent += s.send(burst)
        except BlockingIOError:
            time.sleep(0.005)
        except OSError:  # the server ended the session (timeout) and reset it
            break
    ended = True
    sampler.join()
    s.close()
    growth_mb = (peak - before) / 1024
    print(f"client sent {sent / 1e6:.1f} MB; server RSS {before / 1024:.1f} MB -> peak {peak / 1024:.1f} MB")
    assert growth_mb < 10, f"server grew by {growth_mb:.1f} MB"
    assert time.time() < stop, "the session was not ended by the command timeout"
    mta.wait_log("stat=timeout waiting for input, during=command")
    still_serving(mta)
