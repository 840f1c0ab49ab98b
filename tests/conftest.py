import jax

# Tests run in float64 unless a test is about float32 behaviour.
jax.config.update("jax_enable_x64", True)

# `pytester` runs pytest inside the tests of the jaxcheck pytest plugin.
pytest_plugins = ["pytester"]
