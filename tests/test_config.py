"""The configuration: one schema (the settings dataclasses) behind the loader, the default file and
the README's reference table, and the one-line errors a wrong file gets."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import tomllib
import typing
from pathlib import Path

import pytest

from mailward.config import (SCHEMA, Config, ConfigError, FilePath, default_config_text, from_dict, load,
                             reference_markdown)
from mailward.config.schema import SECTIONS

ROOT = Path(__file__).resolve().parent.parent
FILE = Path("/etc/mailward/mailward.toml")


# ---- one source ----------------------------------------------------------------------------------

def test_sections_are_the_fields_of_config_in_file_order():
    # the core sections in the order a reader meets them; the others (dane, mta_sts, ...) sit among them
    core = ["server", "tls", "spool", "local", "policy", "delivery", "log"]
    assert [name for name in SECTIONS if name in core] == core and list(SECTIONS)[0] == "server"
    assert [f.name for f in dataclasses.fields(Config)] == [*SECTIONS, "path"]
    for cls in (Config, *SECTIONS.values()):
        assert cls.__dataclass_params__.frozen, cls


def test_schema_is_the_dataclass_fields():
    for section, cls in SECTIONS.items():
        fields = dataclasses.fields(cls)
        assert [k.name for k in SCHEMA[section]] == [f.name for f in fields]
        for key, f in zip(SCHEMA[section], fields):
            assert key.doc == f.metadata["doc"]
            assert key.minimum == f.metadata["minimum"]
            assert key.check is f.metadata["check"]
            assert key.default == (list(f.default) if isinstance(f.default, tuple) else f.default)


@pytest.mark.parametrize("section", SECTIONS)
def test_every_setting_is_documented_on_one_line(section):
    for f in dataclasses.fields(SECTIONS[section]):
        doc = f.metadata.get("doc", "")
        where = f"{section}.{f.name}"
        assert doc.strip() and doc.endswith("."), where  # a sentence
        # the default file writes it behind one '#', the README in one table cell
        assert "\n" not in doc and "|" not in doc, where


@pytest.mark.parametrize("section", SECTIONS)
def test_defaults_load_as_the_declared_types(section):
    cfg = from_dict({}, FILE)
    settings = getattr(cfg, section)
    assert type(settings) is SECTIONS[section]
    hints = typing.get_type_hints(SECTIONS[section])
    for f in dataclasses.fields(settings):
        value, hint = getattr(settings, f.name), hints[f.name]
        where = f"{section}.{f.name}"
        if hint is FilePath:
            assert value == "" or (isinstance(value, Path) and value.is_absolute()), where
            assert value == ("" if not f.default else (FILE.parent / f.default)), where
        elif typing.get_origin(hint) is typing.Literal:
            assert value in typing.get_args(hint) and value == f.default, where
        elif hint == tuple[str, ...]:
            assert type(value) is tuple and value == f.default, where
        else:
            assert type(value) is hint and value == f.default, where


def test_settings_are_frozen():
    cfg = from_dict({"server": {"workers": 2}})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.server.workers = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.server = cfg.server
    assert dataclasses.replace(cfg.server, workers=4).workers == 4 and cfg.server.workers == 2


def test_default_file_loads_as_the_defaults():
    commented = tomllib.loads(default_config_text())
    assert commented == {section: {} for section in SCHEMA}
    assert from_dict(commented, FILE) == from_dict({}, FILE)


def test_default_file_with_every_key_written_out_loads_as_the_defaults():
    every = {section: {k.name: k.default for k in keys} for section, keys in SCHEMA.items()}
    text = default_config_text(every)
    assert not re.search(r"^# \w+ = ", text, flags=re.M)  # every key is active
    assert tomllib.loads(text) == every
    assert from_dict(tomllib.loads(text), FILE) == from_dict({}, FILE)


def test_reference_has_a_row_per_key():
    rows = reference_markdown().splitlines()[2:]
    assert [re.match(r"\| `([a-z_]+\.[a-z_]+)` \|", row).group(1) for row in rows] == \
        [f"{section}.{k.name}" for section, keys in SCHEMA.items() for k in keys]
    assert "| `server.max_recipients` | `100` | Recipients per message (RFC 5321 §4.5.3.1.8 asks for " \
           "at least 100). |" in rows
    assert "| `spool.directory` | `\"spool\"` | Queue folder; must be on a file system that honours " \
           "fsync. |" in rows


# The generated reference (docs/configuration.md) and its staleness check live in tests/test_docs.py.


# ---- what a wrong file gets: one line naming the file, the key and what is expected ---------------

_SERVER_KEYS = ", ".join(sorted(k.name for k in SCHEMA["server"]))
ERRORS = [
    # document                                   the line the user sees, after "FILE: "
    ({"sever": {}},                              "[sever]: unknown section; expected one of "
                                                 + ", ".join(SECTIONS)),
    ({"server": 3},                              "server: expected a [server] table"),
    ({"server": {"hostnme": "mx"}},              f"server.hostnme: unknown key; expected one of {_SERVER_KEYS}"),
    ({"server": {"workers": "2"}},               "server.workers: expected an integer >= 1, got '2'"),
    ({"server": {"workers": 0}},                 "server.workers: expected an integer >= 1, got 0"),
    ({"server": {"workers": True}},              "server.workers: expected an integer >= 1, got True"),
    ({"server": {"workers": 1.5}},               "server.workers: expected an integer >= 1, got 1.5"),
    ({"server": {"idle_timeout": "5m"}},         "server.idle_timeout: expected a number >= 0.1, got '5m'"),
    ({"server": {"idle_timeout": 0}},            "server.idle_timeout: expected a number >= 0.1, got 0"),
    ({"server": {"hostname": 5}},                "server.hostname: expected a string, got 5"),
    ({"server": {"reverse_lookup": 1}},          "server.reverse_lookup: expected true or false, got 1"),
    ({"server": {"listen": "127.0.0.1:25"}},     "server.listen: expected a list of strings, got '127.0.0.1:25'"),
    ({"server": {"listen": ["[::1]:25", "mx"]}}, "server.listen: expected HOST:PORT entries like \"127.0.0.1:2525\" "
                                                 "or \"[::1]:25\", optionally followed by a role (mx, submission, submissions) as in "
                                                 "\"127.0.0.1:587 submission\" (not 'mx'), got ['[::1]:25', 'mx']"),
    ({"server": {"listen": ["[]:25"]}},          "server.listen: expected HOST:PORT entries like \"127.0.0.1:2525\" "
                                                 "or \"[::1]:25\", optionally followed by a role (mx, submission, submissions) as in "
                                                 "\"127.0.0.1:587 submission\" (not '[]:25'), got ['[]:25']"),
    ({"server": {"bare_line_endings": "fix"}},   "server.bare_line_endings: expected one of \"reject\", "
                                                 "\"normalise\", got 'fix'"),
    ({"tls": {"min_version": "SSLv3"}},          "tls.min_version: expected one of \"TLSv1\", \"TLSv1.1\", "
                                                 "\"TLSv1.2\", \"TLSv1.3\", got 'SSLv3'"),
    ({"tls": {"cert_file": 3}},                  "tls.cert_file: expected a path (string), got 3"),
    ({"local": {"users": ["a", 1]}},             "local.users: expected a list of strings, got ['a', 1]"),
    ({"policy": {"cert_regex_issuer": "(x"}},    "policy.cert_regex_issuer: expected a regular expression "
                                                 "(missing ), unterminated subpattern at position 0), got '(x'"),
    ({"delivery": {"retry_jitter": -0.1}},       "delivery.retry_jitter: expected a number >= 0, got -0.1"),
    ({"log": {"level": "loud"}},                 "log.level: expected one of \"debug\", \"info\", \"notice\", "
                                                 "\"warning\", \"error\", got 'loud'"),
]


@pytest.mark.parametrize("document, message", ERRORS, ids=[m.split(":")[0] for _, m in ERRORS])
def test_a_wrong_file_gets_one_line(document, message):
    with pytest.raises(ConfigError) as err:
        from_dict(document, FILE)
    assert str(err.value) == f"{FILE}: {message}"
    with pytest.raises(ConfigError) as err:
        from_dict(document)
    assert str(err.value) == f"<config>: {message}"


def test_load_names_the_file(tmp_path):
    path = tmp_path / "mailward.toml"
    path.write_text("[server]\nworkers = 0\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path}: server.workers: expected an integer >= 1, got 0")):
        load(path)
    path.write_text("[server\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path}: not valid TOML: ")):
        load(path)
    with pytest.raises(ConfigError, match=re.escape(f"{tmp_path / 'nope.toml'}: cannot read the config file: "
                                                    "No such file or directory")):
        load(tmp_path / "nope.toml")


def test_load_resolves_paths_against_the_files_folder(tmp_path):
    path = tmp_path / "etc" / "mailward.toml"
    path.parent.mkdir()
    path.write_text('[spool]\ndirectory = "../var/spool"\n[tls]\ncert_file = "/abs/cert.pem"\n'
                    '[server]\nidle_timeout = 5\nlisten = ["[::1]:25"]\n')
    cfg = load(path)
    assert cfg.path == path.resolve()
    assert cfg.spool.directory == (tmp_path / "var" / "spool").resolve()
    assert cfg.tls.cert_file == Path("/abs/cert.pem") and cfg.tls.key_file == ""
    assert cfg.server.idle_timeout == 5.0 and type(cfg.server.idle_timeout) is float
    assert cfg.server.listen == ("[::1]:25",)


def test_the_command_line_shows_the_line_and_exits_2(tmp_path):
    path = tmp_path / "mailward.toml"
    path.write_text("[server]\nhostnme = \"mx.example\"\n")
    run = subprocess.run([sys.executable, "-m", "mailward", "serve", "-c", str(path)],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr == f"mailward: {path}: server.hostnme: unknown key; expected one of {_SERVER_KEYS}\n"


# ---- where the file is: -c, $MAILWARD_CONFIG, /etc/mailward/mailward.toml -------------------------

def _mailward(args, tmp_path, env_config=None):
    import os
    env = {k: v for k, v in os.environ.items() if k != "MAILWARD_CONFIG"}
    if env_config is not None:
        env["MAILWARD_CONFIG"] = str(env_config)
    return subprocess.run([sys.executable, "-m", "mailward", *args], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, env=env)


def _small_config(tmp_path, name="mailward.toml"):
    path = tmp_path / name
    path.write_text(f'[spool]\ndirectory = "{tmp_path / name}.spool"\n')
    return path


def test_default_path_is_etc_unless_the_environment_names_one(monkeypatch):
    from mailward.config import default_path
    monkeypatch.delenv("MAILWARD_CONFIG", raising=False)
    assert default_path() == FILE
    monkeypatch.setenv("MAILWARD_CONFIG", "/srv/mail/mailward.toml")
    assert default_path() == Path("/srv/mail/mailward.toml")


def test_commands_read_mailward_config_without_c(tmp_path):
    path = _small_config(tmp_path)
    run = _mailward(["queue", "list"], tmp_path, env_config=path)
    assert run.returncode == 0, run.stderr
    assert "0 messages in the queue" in run.stdout


def test_c_wins_over_the_environment(tmp_path):
    good = _small_config(tmp_path)
    run = _mailward(["queue", "-c", str(good), "list"], tmp_path, env_config=tmp_path / "nothing.toml")
    assert run.returncode == 0, run.stderr


def test_a_missing_default_file_is_one_line_with_the_fix(tmp_path):
    missing = tmp_path / "absent.toml"
    run = _mailward(["queue", "list"], tmp_path, env_config=missing)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert str(missing) in run.stderr and "MAILWARD_CONFIG" in run.stderr
    assert "-c FILE" in run.stderr and "mailward quickstart" in run.stderr


def test_policy_check_reads_the_configs_access_map(tmp_path):
    amap = tmp_path / "access"
    amap.write_text("TLS_Clt:client.example\tENCR:128\n")
    path = tmp_path / "mailward.toml"
    path.write_text(f'[policy]\naccess_map = "{amap}"\n')
    run = _mailward(["policy", "check"], tmp_path, env_config=path)
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"{amap}: 1 entries, syntax OK\n"
