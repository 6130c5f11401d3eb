"""``mailward queue`` on a spool the delivery side has worked on: list, show, route."""

from __future__ import annotations

import subprocess
import sys

from harness import Harness, message, run

from mailward.config import default_config_text


def cli(config, *args):
    return subprocess.run([sys.executable, "-m", "mailward", "queue", "-c", str(config), *args],
                          capture_output=True, text=True, timeout=30)


def test_list_show_and_route(tmp_path, dns_server, mx_port):
    settings = {"delivery": {"resolver": [dns_server], "smtp_port": mx_port, "dns_timeout": 3.0},
                "spool": {"directory": str(tmp_path / "spool"), "fsync": False},
                "local": {"maildir_root": str(tmp_path / "maildir")}}
    config = tmp_path / "mailward.toml"
    config.write_text(default_config_text(settings))
    h = Harness(tmp_path, dns_server, mx_port, settings)

    async def main():
        qid = h.send("a@localhost", ["u@mail.broken.test"], message())
        await h.start()
        await h.settle()
        await h.stop()
        return qid
    qid = run(main)

    out = cli(config, "list")
    assert out.returncode == 0, out.stderr
    line = next(x for x in out.stdout.splitlines() if x.startswith(qid))
    assert "deferred" in line and ("in 4m" in line or "in 5m" in line)
    assert "<u@mail.broken.test> (deferred: 451 4.4.3 Host name lookup failure" in line

    out = cli(config, "show", qid)
    assert "attempts=1" in out.stdout and "next try:  in " in out.stdout
    assert "attempt:" in out.stdout and "deferred 451 4.4.3" in out.stdout

    out = cli(config, "route", "order.test")
    assert out.returncode == 0
    assert f"10 mx1.order.test [127.0.0.11]:{mx_port}" in out.stdout
    assert f"20 mx2.order.test [127.0.0.12]:{mx_port}" in out.stdout
    out = cli(config, "route", "null.test")
    assert out.returncode == 1 and "bounced: 556 5.1.10" in out.stdout
    out = cli(config, "route", "localhost")
    assert "local" in out.stdout


def test_route_shows_every_host_of_a_route_and_the_error_mailer(tmp_path, dns_server, mx_port):
    (tmp_path / "routes").write_text("two.example esmtp:[127.0.0.6]:mx1.order.test\n"
                                     "gone.example error:5.1.1:550 User has moved\n")
    config = tmp_path / "mailward.toml"
    config.write_text(default_config_text({"delivery": {"resolver": [dns_server], "smtp_port": mx_port,
                                                        "route_file": str(tmp_path / "routes")}}))
    out = cli(config, "route", "two.example")
    assert "two.example: route two.example -> esmtp:[127.0.0.6]:mx1.order.test;" in out.stdout
    lines = out.stdout.splitlines()[1:]
    assert lines[0].split() == ["0", "[127.0.0.6]", f"[127.0.0.6]:{mx_port}"]     # ${server_name} keeps brackets
    assert lines[1].split()[1:] == ["mx1.order.test", f"[127.0.0.11]:{mx_port}"]
    out = cli(config, "route", "gone.example")
    assert out.stdout.strip() == "gone.example: route gone.example -> error:5.1.1:550 User has moved"
