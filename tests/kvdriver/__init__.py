"""``kv``: a test driver for a file-backed fake key-value store with primary/replica roles.

It exists to prove the driver interface (issue 12): a new kind of component is one
folder and one line. This package lives outside failback's source tree and is added by
``FAILBACK_DRIVERS=tests.kvdriver.driver:KvDriver``; no file of failback names it.
``src/failback/drivers/README.md`` walks through it as the worked example.

Layering, as in the built-in drivers (no cycles): ``store`` (the fake store, files
behind a Host) -> ``settings`` (the topology's model) -> ``facts`` (read-only
observation) -> ``actions`` (the step code) -> ``steps`` (what each plan phase gets)
-> ``driver`` (the one class the catalog loads).
"""
