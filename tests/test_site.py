"""The documentation site builds strictly, and its API reference covers every
public name of `jaxcheck`.

Needs the docs extra (`pip install ".[docs]"`); skipped without MkDocs.
"""

import pathlib
import subprocess
import sys
import types
import zlib

import pytest

import jaxcheck

ROOT = pathlib.Path(__file__).resolve().parent.parent
PUBLIC = sorted(
    name
    for name, value in vars(jaxcheck).items()
    if not name.startswith("_") and not isinstance(value, types.ModuleType)
)


def inventory_names(path: pathlib.Path) -> set[str]:
    """The object names of a Sphinx inventory (version 2: four header lines,
    then a zlib-compressed body of `name domain:role priority uri dispname`)."""
    lines = path.read_bytes().split(b"\n", 4)
    assert lines[0] == b"# Sphinx inventory version 2", lines[0]
    assert b"zlib" in lines[3], lines[3]
    body = zlib.decompress(lines[4]).decode()
    return {line.split(" ", 1)[0] for line in body.splitlines() if line.strip()}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> pathlib.Path:
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    site_dir = tmp_path_factory.mktemp("site")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    return site_dir


def test_public_names_are_found():
    assert "check_grad" in PUBLIC and "CheckOptions" in PUBLIC
    assert len(PUBLIC) >= 30


def test_site_builds_strictly(site):
    for page in ("index.html", "reference/options/index.html", "changelog/index.html"):
        assert (site / page).is_file(), page
    changelog = (site / "changelog" / "index.html").read_text()
    assert "Unreleased" in changelog  # CHANGELOG.md is included, not a copy


def test_inventory_lists_every_public_name(site):
    names = inventory_names(site / "objects.inv")
    missing = [name for name in PUBLIC if f"jaxcheck.{name}" not in names]
    assert not missing, f"not in the API reference (docs/reference/): {missing}"


def test_inventory_agrees_with_sphobjinv(site):
    soi = pytest.importorskip("sphobjinv")
    inventory = soi.Inventory(str(site / "objects.inv"))
    assert {obj.name for obj in inventory.objects} == inventory_names(
        site / "objects.inv"
    )
