"""Runs: the executor, gates, locks, resume and undo (the journal is failback.store)."""
