"""The command line, the demo and the pytest plugin."""
