"""The ``pgbouncer`` driver: PAUSE, retarget, RESUME — a database switch clients see as a stall."""
