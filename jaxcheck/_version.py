"""The package version, in a module of its own so that any module can read it.

It is written here and nowhere else: the build reads it from this file into the
package metadata (pyproject.toml's `[tool.hatch.version]`), so
`importlib.metadata.version("jaxcheck")` and `jaxcheck.__version__` agree.
"""

__version__ = "0.1.0"
