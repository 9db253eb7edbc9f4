"""Read-only facts about a service: component observations, declared checks, health probes.

Nothing in this package writes anything, ever (``failback status``, ``plan``, the API and
the metrics call it).
"""
