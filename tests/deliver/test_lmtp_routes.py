"""``lmtp:`` routes in the route file: what parses, what is refused with FILE:LINE and the fix."""

from __future__ import annotations

import pytest

from mailward.deliver.routes import RouteError, load_routes


def table(tmp_path, text: str):
    path = tmp_path / "routes"
    path.write_text(text)
    return load_routes(path)


def test_unix_socket_and_tcp_routes(tmp_path):
    t = table(tmp_path, "example.test  lmtp:unix:/run/dovecot/lmtp\n"
                        ".cyrus.example LMTP:[192.0.2.4]:2003:[192.0.2.5]:24\n")
    unix = t["example.test"]
    assert (unix.kind, unix.mailer, unix.socket, unix.key) == ("lmtp", "lmtp", "/run/dovecot/lmtp", "example.test")
    assert unix.text == "lmtp:unix:/run/dovecot/lmtp" and unix.targets == ()
    tcp = t[".cyrus.example"]
    assert tcp.kind == "lmtp" and tcp.socket == ""
    assert [(h.host, h.port, h.bracketed) for h in tcp.targets] == [("192.0.2.4", 2003, True),
                                                                    ("192.0.2.5", 24, True)]
    assert tcp.text == "lmtp:[192.0.2.4]:2003:[192.0.2.5]:24"


@pytest.mark.parametrize("target,why", [
    ("lmtp:unix:run/lmtp", "absolute path"),
    ("lmtp:[192.0.2.4]", "no standard port"),
    ("lmtp:mail.example:24", "lmtp:\\[host\\]:port"),
    ("lmtpx:[192.0.2.4]:24", "unknown mailer"),
])
def test_bad_lmtp_routes_name_the_line_and_the_fix(tmp_path, target, why):
    with pytest.raises(RouteError, match=why) as err:
        table(tmp_path, f"# routes\nexample.test  {target}\n")
    assert str(err.value).startswith(f"{tmp_path / 'routes'}:2:")
