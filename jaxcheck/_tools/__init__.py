"""The command line, benchmarks, demo and the pytest plugin."""
