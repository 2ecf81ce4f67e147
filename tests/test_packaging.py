"""What the wheel carries: every template and the type marker, as setup.cfg's package_data
declares them (a pattern that misses a folder ships a package whose pages fail to render)."""

from __future__ import annotations

import configparser
import glob
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def declared(package: str) -> set[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    patterns = config["options.package_data"][package].split()
    base = ROOT / package.replace(".", "/")
    return {
        match for pattern in patterns for match in glob.glob(pattern, root_dir=base, recursive=True)
    }


def files_under(package: str, folder: str, suffix: str) -> set[str]:
    base = ROOT / package.replace(".", "/")
    return {str(p.relative_to(base)) for p in (base / folder).rglob(f"*{suffix}")}


def test_the_wheel_declares_every_template_of_the_app() -> None:
    templates = files_under("frameio_oauth", "templates", ".html")
    assert templates  # the app has pages
    assert templates <= declared("frameio_oauth")


def test_the_wheel_declares_every_template_of_the_stand_in() -> None:
    templates = files_under("frameio_oauth.standin", "templates", ".html")
    assert templates <= declared("frameio_oauth.standin")


def test_the_wheel_declares_the_type_marker() -> None:
    assert "py.typed" in declared("frameio_oauth")
