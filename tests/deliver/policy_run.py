"""One run of a real mailward process delivering through the TLS policy receivers: write the
access map and route file a user would write, start `mailward serve`, hand it a message over
SMTP, wait until every remote recipient has its ``to=`` line, and return the log."""

from __future__ import annotations

import re
import smtplib
import time

from recorder import places

MESSAGE = (b"From: <a@localhost>\r\nTo: <u@example>\r\nSubject: policy sweep\r\n"
           b"Message-ID: <sweep@client.test>\r\n\r\nThe body.\r\n")


def sender_settings(pki, dns_server, mx_port, tmp_path, access: str, routes: str, **delivery) -> dict:
    (tmp_path / "access").write_text("Connect:127.0.0.1 RELAY\n" + access)
    (tmp_path / "routes").write_text(routes)
    return {
        "server": {"hostname": "sender.test"},
        "local": {"domains": ["localhost"]},
        "tls": {"ca_file": str(pki.ca)},
        "policy": {"access_map": str(tmp_path / "access")},
        "delivery": {"resolver": [dns_server], "smtp_port": mx_port, "route_file": str(tmp_path / "routes"),
                     "client_cert_file": str(pki.client_cert), "client_key_file": str(pki.client_key),
                     "connect_timeout": 2.0, "command_timeout": 5.0, "retry_first": 3600.0,
                     "retry_jitter": 0.0, **delivery},
    }


def all_routes() -> str:
    return "".join(p.route + "\n" for p in places() if p.route)


def submit(mta, rcpts: list[str], message: bytes = MESSAGE) -> None:
    with smtplib.SMTP(mta.host, mta.port, timeout=10) as s:
        s.ehlo("client.test")
        s.sendmail("a@localhost", rcpts, message)


def to_lines(log: str, rcpt: str) -> list[str]:
    return [line for line in log.splitlines() if f"to=<{rcpt}>," in line]


def wait_results(mta, rcpts: list[str], timeout: float = 30) -> str:
    """The log once every recipient has a to= line."""
    deadline = time.time() + timeout
    while True:
        log = mta.log_text()
        if all(to_lines(log, r) for r in rcpts):
            return log
        if time.time() > deadline:
            missing = [r for r in rcpts if not to_lines(log, r)]
            raise AssertionError(f"no to= line for {missing}\n{log}")
        time.sleep(0.05)


def policy_lines(log: str, ruleset: str) -> list[str]:
    return [m.group(0) for m in re.finditer(rf"ruleset={ruleset}, [^\n]*", log)]
