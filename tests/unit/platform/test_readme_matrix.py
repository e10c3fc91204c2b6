"""The README's authorization matrix is the one the call guard enforces."""

from __future__ import annotations

from pathlib import Path

from services.platform import access

README = Path(__file__).resolve().parents[3] / "README.md"
START, END = "<!-- access-matrix:start -->", "<!-- access-matrix:end -->"


def test_readme_matrix_is_the_generated_one() -> None:
    text = README.read_text(encoding="utf-8")
    assert text.count(START) == 1 and text.count(END) == 1, "README needs one matrix block"
    block = text.split(START, 1)[1].split(END, 1)[0]
    assert block.strip() == access.markdown().strip(), (
        "README.md's authorization matrix is out of date: run "
        "`.venv/bin/sscard access --update README.md`"
    )
