"""The README's promises that can drift: the two quick-start commands and the config table."""

from pathlib import Path

from mailward.config import reference_markdown

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_quick_start_commands():
    assert "make run" in README and "make test" in README


def test_config_table_matches_schema():
    # scripts/update-readme-config regenerates it
    assert reference_markdown() in README
