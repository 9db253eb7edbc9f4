"""Health checks (and, later, failure detection and policies)."""
