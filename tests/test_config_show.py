"""``mailward config show``: the effective configuration as TOML, every key or (``--non-default``)
only those that differ from the defaults, as ``postconf -n``; it loads back to the same settings."""

from __future__ import annotations

import tomllib
from pathlib import Path

from mailward.config import SCHEMA, load
from tests.test_check_command import mailward


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "mailward.toml"
    path.write_text('[server]\nhostname = "mx.example"\nmax_recipients = 50\nidle_timeout = 300\n'
                    '[spool]\ndirectory = "queue"\n[local]\ndomains = ["example.org", "localhost"]\n')
    return path


def test_non_default_is_only_what_the_file_changes(tmp_path):
    path = _config(tmp_path)
    run = mailward("config", "show", "-c", path, "--non-default", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout == (f"# mailward configuration read from {path.resolve()}: settings that differ from the "
                          "defaults.\n\n"
                          '[server]\nhostname = "mx.example"\nmax_recipients = 50\n\n'
                          f'[spool]\ndirectory = "{(tmp_path / "queue").resolve()}"\n\n'
                          '[local]\ndomains = ["example.org", "localhost"]\n')
    # idle_timeout = 300 is the default written out: not shown


def test_show_prints_every_key_and_loads_back_to_the_same_settings(tmp_path):
    path = _config(tmp_path)
    run = mailward("config", "show", cwd=tmp_path, env_config=path)   # MAILWARD_CONFIG, no -c
    assert run.returncode == 0, run.stderr
    data = tomllib.loads(run.stdout)
    assert list(data) == list(SCHEMA)
    assert {s: set(body) for s, body in data.items()} == {s: {k.name for k in keys} for s, keys in SCHEMA.items()}
    again = tmp_path / "other" / "again.toml"
    again.parent.mkdir()
    again.write_text(run.stdout)
    first, second = load(path), load(again)
    for section in SCHEMA:
        assert getattr(first, section) == getattr(second, section)


def test_non_default_output_loads_back_too(tmp_path):
    path = _config(tmp_path)
    run = mailward("config", "show", "-c", path, "--non-default", cwd=tmp_path)
    again = tmp_path / "again.toml"
    again.write_text(run.stdout)
    assert all(getattr(load(path), s) == getattr(load(again), s) for s in SCHEMA)


def test_a_default_config_shows_nothing_with_non_default(tmp_path):
    path = tmp_path / "empty.toml"
    path.write_text("")
    run = mailward("config", "show", "-c", path, "--non-default", cwd=tmp_path)
    assert run.returncode == 0 and tomllib.loads(run.stdout) == {}


def test_a_bad_file_is_one_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[server]\nworkers = 0\n")
    run = mailward("config", "show", "-c", path, cwd=tmp_path)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr == f"mailward: {path.resolve()}: server.workers: expected an integer >= 1, got 0\n"


def test_config_alone_still_prints_the_commented_default_file(tmp_path):
    run = mailward("config", cwd=tmp_path)
    assert run.returncode == 0 and run.stdout.startswith("# mailward configuration. Every key is shown")
