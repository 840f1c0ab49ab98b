"""The README's commands and quickstart, and every docstring example, run as written."""

import doctest
import importlib
import pathlib
import re

import pytest

pytestmark = pytest.mark.core

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
MODULES = sorted(
    ".".join(p.relative_to(ROOT / "jaxcheck").with_suffix("").parts)
    for p in (ROOT / "jaxcheck").rglob("*.py")
    if ">>>" in p.read_text()
)


def _code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


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
    install, test = _code_blocks("bash")[1].strip().split(" && ")
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


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"jaxcheck.{name}")
    result = doctest.testmod(
        module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    )
    assert result.attempted > 0 and result.failed == 0


def test_readme_step_table_matches_the_code():
    import jax.numpy as jnp
    import numpy as np

    from jaxcheck._engine.steps import step_sizes

    superscripts = str.maketrans("⁻⁰¹²³⁴⁵⁶⁷⁸⁹", "-0123456789")
    for dtype in ("float64", "float32", "float16", "bfloat16"):
        row = re.search(rf"^\| {dtype} +\|.*$", README, flags=re.M).group(0)
        exponents = [
            int(e.translate(superscripts)) for e in re.findall(r"2([⁻⁰-⁹¹²³]+)", row)
        ]
        expected = [
            int(np.log2(step_sizes(np.ones(1), jnp.dtype(dtype), m, None))[0])
            for m in ("central", "forward")
        ]
        assert exponents == expected, dtype
