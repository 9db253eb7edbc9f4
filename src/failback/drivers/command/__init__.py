"""The ``command`` driver: a component driven by shell commands from the topology file.

It lets users drive anything that has no driver yet (a VIP, a DNS record, an app
tier) with their own scripts, while failback supplies ordering, journaling, gates,
undo and reports.
"""
