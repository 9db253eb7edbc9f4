"""Runs: the journal, the executor, gates, locks, resume and undo."""
