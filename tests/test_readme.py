"""The README documents every setting the service reads."""

from pathlib import Path

from service.config import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    missing = [f"XMODAL_{name.upper()}" for name in Settings.model_fields
               if f"`XMODAL_{name.upper()}`" not in README]
    assert not missing, f"README lacks {missing}"


def test_readme_starts_with_the_two_commands() -> None:
    first_block = README.split("```")[1]
    assert "make run" in first_block and "make test" in first_block
