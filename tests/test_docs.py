"""The README's commands and quickstart, the code blocks of the README and of the
documentation pages, and every docstring example, run as written.

A fenced block tagged `python` in README.md or docs/**/*.md runs; Python that is
shown but not run is tagged `py` (see the contributor guide,
docs/guides/architecture.md).
"""

import doctest
import importlib
import pathlib
import re

import pytest

pytestmark = pytest.mark.core

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
STEPS_PAGE = ROOT / "docs" / "guides" / "steps.md"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
RUNNABLE = re.compile(r"^```python\n(.*?)^```", flags=re.S | re.M)
MODULES = sorted(
    ".".join(p.relative_to(ROOT / "jaxcheck").with_suffix("").parts)
    for p in (ROOT / "jaxcheck").rglob("*.py")
    if ">>>" in p.read_text()
)


def test_readme_has_exactly_two_setup_commands():
    setup = README.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)```", setup, flags=re.S)
    assert [c.strip() for c in commands] == [
        "pip install . && jaxcheck demo",
        'pip install ".[test]" && python -m pytest',
    ]


def test_ci_runs_the_readme_test_command():
    # with the newest JAX pinned; the oldest supported JAX runs after it
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    setup = README.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    test_command = re.findall(r"```bash\n(.*?)```", setup, flags=re.S)[1].strip()
    install, test = test_command.split(" && ")
    pinned = f'{install} -c "$NEWEST"'
    assert pinned in ci and test in ci[ci.index(pinned) :]


def test_readme_quickstart_runs():
    section = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    (quickstart,) = [
        b
        for b in re.findall(r"```python\n(.*?)```", section, flags=re.S)
        if "check_grad" in b
    ]
    namespace: dict = {}
    exec(compile(quickstart, "README quickstart", "exec"), namespace)
    assert namespace["report"].ok
    assert namespace["num"]["n_layers"] is None


@pytest.mark.parametrize(
    "page",
    [p for p in PAGES if RUNNABLE.search(p.read_text())],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_python_blocks_run(page, tmp_path, monkeypatch):
    """Every `python` block of a page runs: in order, in one namespace (a block
    may use what an earlier one defined), in a temporary directory, with JAX's
    x64 setting restored afterwards."""
    import jax

    monkeypatch.chdir(tmp_path)
    x64 = jax.config.jax_enable_x64
    namespace: dict = {"__name__": "__docs__"}
    try:
        for k, block in enumerate(RUNNABLE.findall(page.read_text())):
            name = f"{page.relative_to(ROOT)}, python block {k + 1}"
            exec(compile(block, name, "exec"), namespace)
    finally:
        jax.config.update("jax_enable_x64", x64)


def test_readme_is_short():
    assert len(README.splitlines()) <= 300


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"jaxcheck.{name}")
    result = doctest.testmod(
        module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    )
    assert result.attempted > 0 and result.failed == 0


def test_step_table_matches_the_code():
    import jax.numpy as jnp
    import numpy as np

    from jaxcheck._engine.steps import step_sizes

    page = STEPS_PAGE.read_text()  # the table of "Steps and pass bands"
    superscripts = str.maketrans("⁻⁰¹²³⁴⁵⁶⁷⁸⁹", "-0123456789")
    for dtype in ("float64", "float32", "float16", "bfloat16"):
        row = re.search(rf"^\| {dtype} +\|.*$", page, flags=re.M).group(0)
        exponents = [
            int(e.translate(superscripts)) for e in re.findall(r"2([⁻⁰-⁹¹²³]+)", row)
        ]
        expected = [
            int(np.log2(step_sizes(np.ones(1), jnp.dtype(dtype), m, None))[0])
            for m in ("central", "forward")
        ]
        assert exponents == expected, dtype


def test_every_public_function_has_an_example():
    import inspect

    import jaxcheck

    functions = [
        name
        for name in dir(jaxcheck)
        if not name.startswith("_") and inspect.isfunction(getattr(jaxcheck, name))
    ]
    assert len(functions) > 15
    missing = [n for n in functions if ">>>" not in getattr(jaxcheck, n).__doc__]
    assert not missing, f"public functions without an example: {missing}"
