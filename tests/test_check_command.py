"""``mailward check`` and the access map's warnings: every problem a start would meet, each as
file:line (or file: setting) and the fix, all of them at once; exit 0 when clean, 2 otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def mailward(*args, cwd: Path, env_config: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "MAILWARD_CONFIG"}
    if env_config is not None:
        env["MAILWARD_CONFIG"] = str(env_config)
    return subprocess.run([sys.executable, "-m", "mailward", *map(str, args)], capture_output=True, text=True,
                          timeout=60, cwd=cwd, env=env)


# ---- sendmail access map tags mailward does not implement ----------------------------------------

UNIMPLEMENTED = "Connect:10.1 RELAY\nClientRate:192.0.2.1 2\nSpam:abuse@ FRIEND\nTLS_Clt:x.example VERIFY\n" \
                "GreetPause:localhost 0\nLocal_mine:x OK\nAuthInfo:relay.example \"U:me\" \"P:pw\"\nQGRP:x.example slow\n" \
                "ClientConn:192.0.2.9 3\n"


@pytest.mark.parametrize("line,tag", [(2, "ClientRate"), (3, "Spam"), (5, "GreetPause"), (6, "Local_mine"),
                                      (7, "AuthInfo"), (8, "QGRP"), (9, "ClientConn")])
def test_policy_check_warns_about_each_unimplemented_tag(tmp_path, line, tag):
    amap = tmp_path / "access"
    amap.write_text(UNIMPLEMENTED)
    run = mailward("policy", "check", amap, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"{amap}: 9 entries, syntax OK\n"
    warnings = run.stderr.splitlines()
    assert len(warnings) == 7 and "Traceback" not in run.stderr
    assert f"warning: {amap}:{line}: {tag}: tag " in warnings[[2, 3, 5, 6, 7, 8, 9].index(line)]
    assert all("the entry has no effect" in w for w in warnings)


def test_implemented_tags_and_untagged_keys_get_no_warning():
    from mailward.policy.accessmap import AccessMap
    amap = AccessMap.from_text("Connect:IPv6:2001:db8::1 OK\nFrom:a@b.example REJECT\nTo:c.example RELAY\n"
                               "TLS_Srv:x ENCR:128\nTLS_Rcpt:y VERIFY\nTry_TLS:z NO\nSrv_Features:w V\n"
                               "CERTISSUER:/CN=CA RELAY\nCERTSUBJECT:/CN=x RELAY\nx.example RELAY\n192.0.2 REJECT\n"
                               "IPv6:2001:db8::2 OK\n", "access")
    assert amap.warnings == []


def test_many_unimplemented_lines_are_summarised():
    from mailward.policy.accessmap import AccessMap
    amap = AccessMap.from_text("".join(f"ClientRate:192.0.2.{i} 2\n" for i in range(1, 251)), "access")
    assert len(amap.warnings) == 101
    assert amap.warnings[-1] == "access: 150 more entries with tags mailward does not implement (not listed)"
