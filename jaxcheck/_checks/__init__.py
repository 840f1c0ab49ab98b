"""The public checks: each validates, runs the engine and builds its report."""
