"""The manual pages, in roff (man(7) macros), generated from the code that defines them.

Sources, so that a page cannot say what the program does not do:

- ``mailward(8)`` and one ``mailward-COMMAND(8)`` per sub-command that
  :func:`mailward.cli.build_parser` has at the moment: its usage line, description, options
  and nested sub-commands, read from the argparse parsers (argparse has no man writer, and
  the maintained ones — argparse-manpage, click-man — are build-time plug-ins that add a
  dependency to render these few macros; a walk over ``parser._actions`` is enough here);
- ``mailward.toml(5)`` from the settings schema (:data:`mailward.config.SCHEMA`): every
  section and key with its type, default and documentation.

:func:`pages` returns ``{file name: roff text}``; the text depends only on the code (no date,
no terminal width, no environment: option defaults such as ``$MAILWARD_CONFIG`` are not
printed, the help texts say them). scripts/update-docs writes them into ``man/`` and
tests/test_manpages.py fails when the committed pages differ. Non-ASCII characters become
groff's ``\\[uXXXX]`` escapes, so ``groff -man -ww`` reads the pages without warnings.
Failure: an exception from building the parser (a command module that does not import)
propagates; nothing is written here.
"""

from __future__ import annotations

import argparse
import re
import sys

from mailward import __version__

SECTION_TITLE = {5: "File Formats", 8: "System Manager's Manual"}
# the reference chapters a page points to (docs/ of the source tree, installed with it or not)
DOCS = {"serve": "receiving.md, operations.md", "quickstart": "README.md",
        "queue": "operations.md, delivery.md", "ca": "certificates.md", "policy": "tls-policy.md",
        "check": "operations.md", "config": "configuration.md, operations.md", "sendmail": "operations.md",
        "worker": "reliability.md", "mta-sts": "mta-sts.md", "tls-rpt": "tls-rpt.md", "user": "submission.md"}


# ---------------------------------------------------------------- roff text

def esc(text: str, code: bool = False) -> str:
    """Plain text → roff: backslashes, leading dots and quotes, every dash of a word that starts
    with one (an option: \\- neither hyphenates nor breaks) or of code, non-ASCII characters as
    \\[uXXXX], and break points inside very long tokens."""
    text = text.replace("\\", "\\e")
    if code:
        text = text.replace("-", "\\-")
    else:
        text = re.sub(r"(?<![\w-])-[\w-]*", lambda m: m.group(0).replace("-", "\\-"), text)
    text = "".join(c if ord(c) < 128 else f"\\[u{ord(c):04X}]" for c in text)
    text = re.sub(r"\S{40,}", lambda m: re.sub(r"([:/,])(?=\S)", r"\1\\:", m.group(0)), text)
    return text


def _line(text: str) -> str:
    return "\\&" + text if text.startswith((".", "'")) else text


def _inline(text: str) -> str:
    """Docstring markup → roff: ``code`` and `code` in bold, :role:`x` as x."""
    text = re.sub(r":\w+:`~?([^`]+)`", r"\1", text)
    parts = re.split(r"``(.+?)``|`([^`]+)`", text)
    out = []
    for i, part in enumerate(parts):
        if part is None:
            continue
        out.append(esc(part) if i % 3 == 0 else f"\\fB{esc(part, code=True)}\\fR")
    return "".join(out)


def paragraphs(text: str) -> list[str]:
    """A description or docstring → roff lines: paragraphs, '* ' bullets, '::' literal blocks."""
    lines = text.expandtabs().strip("\n").splitlines()
    indent = min((len(x) - len(x.lstrip()) for x in lines[1:] if x.strip()), default=0)
    lines = [lines[0].strip()] + [x[indent:] for x in lines[1:]] if lines else []
    out: list[str] = []
    block: list[str] = []
    literal = False

    def flush():
        nonlocal block
        if not block:
            return
        if literal:
            out.extend([".PP", ".RS 4", ".nf", *(_line(esc(x)) for x in block), ".fi", ".RE"])
        elif block[0].startswith(("* ", "- ")):
            item: list[str] = []
            for x in block + ["* "]:
                if x.startswith(("* ", "- ")):
                    if item:
                        out.extend([".IP \\(bu 2", _line(_inline(" ".join(item)))])
                    item = [x[2:].strip()]
                else:
                    item.append(x.strip())
        else:
            out.extend([".PP", _line(_inline(" ".join(x.strip() for x in block)))])
        block = []

    for x in lines:
        if not x.strip():
            if not literal:
                flush()
            elif block:
                block.append("")
            continue
        if literal and not x.startswith(" "):
            while block and not block[-1]:
                block.pop()
            flush()
            literal = False
        block.append(x if literal else x.strip())
        if not literal and x.rstrip().endswith("::"):
            block[-1] = block[-1][:-1]
            flush()
            literal = True
    flush()
    return out


def _th(name: str, section: int) -> str:
    # left-adjusted, no hyphenation: option names and paths must stay whole and copyable
    return (f'.TH {esc(name.upper())} {section} "" "mailward {__version__}" "{SECTION_TITLE[section]}"\n'
            ".ad l\n.nh")


# ---------------------------------------------------------------- argparse

def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def commands(parser: argparse.ArgumentParser) -> dict[str, tuple[argparse.ArgumentParser, str]]:
    """The sub-commands of a parser: name → (its parser, its one-line help), in declaration order."""
    sub = _subparsers(parser)
    if sub is None:
        return {}
    helps = {a.dest: a.help or "" for a in sub._choices_actions}
    return {name: (p, helps.get(name, "")) for name, p in sub.choices.items()}


def usage(parser: argparse.ArgumentParser) -> str:
    """The usage line on one line, whatever the terminal's width."""
    formatter = argparse.HelpFormatter(parser.prog, width=100000, max_help_position=100000)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups, prefix="")
    return " ".join(formatter.format_help().split())


def _synopsis(parser: argparse.ArgumentParser) -> list[str]:
    text = usage(parser)
    prog = parser.prog
    rest = text[len(prog):].strip() if text.startswith(prog) else text
    return [f"\\fB{esc(prog)}\\fR {esc(rest)}".rstrip()]


def _options(parser: argparse.ArgumentParser) -> list[str]:
    out = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, (argparse._SubParsersAction,
                                                                      argparse._HelpAction)):
            continue
        if not action.option_strings and not action.help:
            continue  # a bare positional: the synopsis names it
        if action.option_strings:
            metavar = ""
            if action.nargs != 0:
                metavar = action.metavar or action.dest.upper()
                if isinstance(metavar, tuple):
                    metavar = " ".join(metavar)
                if action.choices and not action.metavar:
                    metavar = "{" + ",".join(map(str, action.choices)) + "}"
            names = ", ".join(f"\\fB{esc(o)}\\fR" + (f" \\fI{esc(str(metavar))}\\fR" if metavar else "")
                              for o in action.option_strings)
        else:
            names = f"\\fI{esc(str(action.metavar or action.dest))}\\fR"
        out.extend([".TP", names, _line(_inline(action.help or ""))] if action.help else [".TP", names, "\\&"])
    return out


def _description(parser: argparse.ArgumentParser, help_text: str) -> list[str]:
    text = parser.description or help_text
    if not text:
        return []
    if parser.formatter_class is argparse.RawDescriptionHelpFormatter or "\n" in text:
        return paragraphs(text)
    return [".PP", _line(_inline(text))]


def _own_options(parser: argparse.ArgumentParser) -> bool:
    """A parser whose options its command parses itself (sendmail: getopt-style): REMAINDER only."""
    return any(a.nargs == argparse.REMAINDER for a in parser._actions)


def command_page(name: str, parser: argparse.ArgumentParser, help_text: str) -> str:
    """mailward-NAME(8)."""
    lines = [_th(f"mailward-{name}", 8), ".SH NAME",
             f"mailward\\-{esc(name, code=True)} \\- {_inline(help_text or name)}", ".SH SYNOPSIS", *_synopsis(parser)]
    nested = commands(parser)
    for sub, (p, _) in nested.items():
        lines.extend([".br", *_synopsis(p)])
    lines.extend([".SH DESCRIPTION", *_description(parser, help_text)])
    if _own_options(parser):
        func = parser._defaults.get("func")
        module = sys.modules.get(getattr(func, "__module__", ""), None)
        if module is not None and module.__doc__:
            lines.extend(paragraphs(module.__doc__.split("\n", 1)[1] if "\n" in module.__doc__ else ""))
    options = _options(parser)
    if options:
        lines.extend([".SH OPTIONS", *options])
    if nested:
        lines.append(".SH COMMANDS")
        for sub, (p, text) in nested.items():
            lines.extend([f'.SS "{esc(p.prog)}"', ".PP", *_synopsis(p)])
            if p.description and p.description != text:
                lines.extend(_description(p, text))
            elif text:
                lines.extend([".PP", _line(_inline(text))])
            lines.extend(_options(p))
            for deeper, (q, qtext) in commands(p).items():
                lines.extend([".TP", f"\\fB{esc(q.prog)}\\fR", _line(_inline(qtext)) if qtext else "\\&"])
    lines.extend([".SH SEE ALSO", "\\fBmailward\\fR(8), \\fBmailward.toml\\fR(5)"])
    chapters = [x.strip() for x in DOCS.get(name, "").split(",") if x.strip()]
    if chapters:
        lines.extend([".PP", "In the source tree: " + ", ".join(
            esc(c if c == "README.md" else f"docs/{c}") for c in chapters) + "."])
    return "\n".join(lines) + "\n"


def main_page(parser: argparse.ArgumentParser) -> str:
    """mailward(8): what it is, the commands, files, environment, signals, exit codes."""
    cmds = commands(parser)
    lines = [_th("mailward", 8), ".SH NAME", "mailward \\- a mail transfer agent centred on SMTP over TLS",
             ".SH SYNOPSIS", "\\fBmailward\\fR [\\fB\\-\\-version\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]",
             ".SH DESCRIPTION", *paragraphs(
                 "mailward receives mail over ESMTP with STARTTLS (RFC 5321, RFC 3207), records the TLS facts "
                 "of every connection as sendmail does (verify, cipher, cipher_bits, cert_subject, "
                 "cert_issuer), keeps every accepted message in a durable spool (fsynced before the 250), "
                 "and delivers it into local Maildirs or onward over opportunistic STARTTLS. Its TLS policy "
                 "is sendmail's access map (TLS_Clt, TLS_Srv, TLS_Rcpt, CERTISSUER, Try_TLS, "
                 "Srv_Features).\n\nEach command has a page of its own and answers --help."),
             ".SH COMMANDS"]
    for name, (_, text) in cmds.items():
        lines.extend([".TP", f"\\fBmailward\\-{esc(name, code=True)}\\fR(8)", _line(_inline(text)) if text else "\\&"])
    lines.extend([
        ".SH FILES", ".TP", "\\fI/etc/mailward/mailward.toml\\fR",
        "The configuration read by every command without \\fB\\-c\\fR; see \\fBmailward.toml\\fR(5).",
        ".SH ENVIRONMENT", ".TP", "\\fBMAILWARD_CONFIG\\fR",
        "The configuration file to read instead of /etc/mailward/mailward.toml.",
        ".SH SIGNALS", "Sent to the server named by the PID file in the spool folder:",
        ".TP", "\\fBSIGHUP\\fR",
        "Re-read the whole configuration, the access map, routes, aliases and TLS files, and reopen the "
        "log file, without dropping a connection (systemctl reload).",
        ".TP", "\\fBSIGUSR1\\fR", "Try every queued message now (\\fBmailward queue flush\\fR).",
        ".TP", "\\fBSIGUSR2\\fR", "Take new queue files without resetting retry times (the sendmail command).",
        ".TP", "\\fBSIGTERM\\fR", "Stop accepting, let sessions and deliveries finish briefly, and exit.",
        ".SH EXIT STATUS",
        "0 on success; 2 for a mistake in the command line or a file it names (one line on standard error); "
        "75 when another server holds the spool.",
        ".SH SEE ALSO",
        ", ".join(f"\\fBmailward\\-{esc(n, code=True)}\\fR(8)" for n in cmds) + ", \\fBmailward.toml\\fR(5)",
        ".PP", "In the source tree: README.md and the chapters under docs/ (docs/README.md is their index)."])
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- mailward.toml(5)

def _toml(value) -> str:
    from mailward.config.render import _toml_value
    return _toml_value(value)


def type_text(key) -> str:
    """A key's type as the reference shows it: "int >= 64", "one of "a", "b"", "list of strings"."""
    if key.kind == "choice":
        return "one of " + ", ".join(f'"{c}"' for c in key.choices)
    base = {"int": "integer", "float": "number", "bool": "boolean", "str": "string", "path": "path",
            "list[str]": "list of strings"}.get(key.kind, key.kind)
    return base + (f" >= {key.minimum:g}" if key.minimum is not None else "")


def section_doc(cls: type) -> str:
    """The one-line purpose of a settings class, without its '[name]: ' prefix."""
    doc = (cls.__doc__ or "").strip().split("\n\n")[0]
    if doc.startswith(f"{cls.__name__}("):   # the signature dataclass writes when there is no docstring
        return ""
    doc = " ".join(re.sub(r"^\[[\w.-]+\]:\s*", "", doc).split())
    return doc[:1].upper() + doc[1:]


def toml_page() -> str:
    from mailward.config import SCHEMA, SECTIONS

    lines = [_th("mailward.toml", 5), ".SH NAME", "mailward.toml \\- mailward configuration file",
             ".SH SYNOPSIS", "\\fI/etc/mailward/mailward.toml\\fR", ".SH DESCRIPTION", *paragraphs(
                 "One TOML file configures mailward. Every command reads the file given with -c, else "
                 "$MAILWARD_CONFIG, else /etc/mailward/mailward.toml. A key that is left out has its default. "
                 "Unknown sections and keys, and values of the wrong type, are errors: the command prints one "
                 "line naming the file, the key and what is expected, and exits 2. Relative paths are "
                 "relative to the folder of the file.\n\n"
                 "mailward config prints the default file with every key commented; mailward config show "
                 "--non-default prints what differs from the defaults; mailward check checks the file and "
                 "every file it names. SIGHUP re-reads the file; settings that need a restart are named in "
                 "the log and keep their old value."),
             ".SH SETTINGS"]
    for section, keys in SCHEMA.items():
        lines.extend([f'.SS "[{esc(section)}]"', ".PP", _line(_inline(section_doc(SECTIONS[section])))])
        for key in keys:
            lines.extend([".TP", f"\\fB{esc(key.name)}\\fR = {esc(_toml(key.default))}",
                          f"({esc(type_text(key))}) " + _inline(key.doc)])
    lines.extend([".SH EXAMPLE", ".PP", ".RS 4", ".nf", '[server]', 'hostname = "mx.example.com"',
                  'listen = ["0.0.0.0:25", "[::]:25"]', 'user = "mailward"', "", "[tls]",
                  'cert_file = "/etc/mailward/certs/mail.pem"', 'key_file = "/etc/mailward/certs/mail.key"',
                  'ca_file = "/etc/mailward/ca/ca.pem"', "", "[log]", "syslog = true", ".fi", ".RE",
                  ".SH SEE ALSO", "\\fBmailward\\fR(8), \\fBmailward\\-config\\fR(8), \\fBmailward\\-check\\fR(8)",
                  ".PP", "In the source tree: docs/configuration.md (the same reference in Markdown)."])
    return "\n".join(lines) + "\n"


def command_pages() -> dict[str, str]:
    """mailward(8) and one mailward-COMMAND(8) per sub-command: file name → roff text."""
    from mailward.cli import build_parser

    parser = build_parser()
    out = {"mailward.8": main_page(parser)}
    for name, (p, text) in commands(parser).items():
        out[f"mailward-{name}.8"] = command_page(name, p, text)
    return out


def pages() -> dict[str, str]:
    """Every page: file name → roff text."""
    return {**command_pages(), "mailward.toml.5": toml_page()}
