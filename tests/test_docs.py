"""docs/: the generated reference is up to date with the code, and the index lists every chapter.

docs/configuration.md and man/ are written by scripts/update-docs from the settings schema and
the command-line parsers; `scripts/update-docs --check` lists what is stale without writing."""

from __future__ import annotations

import re
import subprocess
import sys

from mailward.config import SCHEMA
from tests.conftest import ROOT
from tests.test_readme import BEING_WRITTEN, links

DOCS = ROOT / "docs"


def test_generated_files_are_up_to_date():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "update-docs"), "--check"], capture_output=True,
                         text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, f"{out.stderr}\nfix: run scripts/update-docs and commit what it writes"
    assert out.stdout == ""   # --check writes nothing


def test_configuration_reference_has_every_section_and_key():
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    for section, keys in SCHEMA.items():
        body = text.split(f"\n## [{section}]\n", 1)[1].split("\n## ", 1)[0]
        for key in keys:
            assert f"| `{key.name}` |" in body, f"[{section}] {key.name}"


def test_the_index_lists_every_chapter():
    chapters = {p.name for p in DOCS.glob("*.md")} - {"README.md"}
    chapters |= {n.removeprefix("docs/") for n in BEING_WRITTEN}
    linked = {t.partition("#")[0] for t in links(DOCS / "README.md")}
    assert chapters - linked == set(), "add them to docs/README.md"


def test_update_readme_config_is_the_same_script():
    out = subprocess.run(["bash", str(ROOT / "scripts" / "update-readme-config"), "--check"], capture_output=True,
                         text=True, timeout=120, cwd=ROOT, env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr


def test_a_command_module_that_does_not_import_costs_only_the_man_pages(tmp_path):
    """Other work adds command modules and settings while this script runs: a module that does not
    import yet leaves the man(8) pages as they are, says so in one line, and the configuration
    reference and mailward.toml(5) are still checked (written, without --check)."""
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\n"
        "class Broken:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'mailward.commands.check':\n"
        "            raise SyntaxError('half-written module')\n"
        "sys.meta_path.insert(0, Broken())\n")
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "update-docs"), "--check"], capture_output=True,
                         text=True, timeout=120, cwd=ROOT, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 1
    assert "update-docs: man/*.8: not regenerated: SyntaxError: half-written module" in out.stderr
    assert not re.search(r"^stale: man/\S+\.8$", out.stderr, flags=re.M), out.stderr   # left as they are
    assert "Traceback" not in out.stderr
