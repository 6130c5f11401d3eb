"""The manual pages under man/: one per sub-command the program has, up to date with the parsers
and the settings schema, and rendered by man(1) and groff without a warning."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess

import pytest

from mailward import manpages
from mailward.cli import build_parser
from tests.conftest import ROOT

MAN = ROOT / "man"
FIX = "run scripts/update-docs and commit what it writes"


def test_every_sub_command_has_a_page_and_no_page_is_left_over():
    names = set(manpages.commands(build_parser()))
    assert names >= {"serve", "queue", "ca", "policy", "check", "config", "sendmail"}
    wanted = {"mailward.8", "mailward.toml.5", *(f"mailward-{n}.8" for n in names)}
    present = {p.name for p in MAN.iterdir() if p.suffix in (".5", ".8")}
    assert wanted - present == set(), f"missing pages; {FIX}"
    assert present - wanted == set(), f"pages of commands that no longer exist; {FIX}"


def test_pages_are_not_stale():
    stale = [name for name, text in manpages.pages().items()
             if (MAN / name).read_text(encoding="utf-8") != text]
    assert not stale, f"{', '.join(stale)} differ from the code; {FIX}"


def test_pages_do_not_depend_on_the_environment(monkeypatch):
    before = manpages.pages()
    monkeypatch.setenv("MAILWARD_CONFIG", "/somewhere/else.toml")
    monkeypatch.setenv("COLUMNS", "33")
    assert manpages.pages() == before


@pytest.mark.skipif(not shutil.which("groff"), reason="groff not installed (scripts/install-test-deps: groff-base)")
def test_groff_reads_every_page_without_warnings():
    for page in sorted(MAN.iterdir()):
        out = subprocess.run(["groff", "-man", "-ww", "-z", str(page)], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and out.stderr == "", f"{page.name}: {out.stderr}"


@pytest.mark.skipif(not shutil.which("man"), reason="man not installed (scripts/install-test-deps: man-db)")
def test_man_renders_the_pages_as_a_reader_sees_them():
    env = {**os.environ, "MANWIDTH": "80", "LC_ALL": "C.UTF-8"}

    def man(page):
        out = subprocess.run(["man", "--warnings", "-l", str(MAN / page)], capture_output=True, text=True,
                             env=env, timeout=60)
        assert out.returncode == 0 and out.stderr == "", f"{page}: {out.stderr}"
        return re.sub(".\b", "", out.stdout)   # overstrike bold/underline -> plain text

    text = man("mailward.8")
    assert "mailward - a mail transfer agent centred on SMTP over TLS" in text
    for name in manpages.commands(build_parser()):
        assert f"mailward-{name}(8)" in text
        assert f"mailward-{name} - " in man(f"mailward-{name}.8")
    queue = man("mailward-queue.8")
    assert "mailward queue delete" in queue and "--config" in queue
    toml = man("mailward.toml.5")
    assert "[server]" in toml and 'hostname = "localhost"' in toml and "max_command_line = 512" in toml
    assert "(integer >= 64)" in toml


def _man_command():
    from mailward.commands import man

    parser = argparse.ArgumentParser(prog="mailward")
    man.register(parser.add_subparsers())
    return parser


@pytest.mark.skipif(not shutil.which("man"), reason="man not installed (scripts/install-test-deps: man-db)")
def test_mailward_man_shows_pages_by_command_name_and_refuses_unknown_ones(capfd, monkeypatch):
    from mailward.cli import UsageError

    monkeypatch.setenv("MANWIDTH", "80")
    parser = _man_command()
    for page in ("queue", "mailward-queue", "mailward-queue.8"):
        args = parser.parse_args(["man", page])
        assert args.func(args) == 0
        shown = re.sub(".\b", "", capfd.readouterr().out)
        assert shown.startswith("MAILWARD-QUEUE(8)") and "mailward queue delete" in shown
    args = parser.parse_args(["man", "mailward.toml"])
    assert args.func(args) == 0
    assert "max_command_line = 512" in re.sub(".\b", "", capfd.readouterr().out)
    args = parser.parse_args(["man", "nosuch"])
    with pytest.raises(UsageError, match="no manual page 'nosuch'; there are: mailward, mailward-ca"):
        args.func(args)
