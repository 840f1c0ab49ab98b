"""Turning compared entries into reports: verdicts, diagnoses, text, plots."""
