"""The PostgreSQL driver (see driver.py). Modules, each layered on the ones before it:

* lsn         WAL positions: parse, compare, diff (formatting lives in model/units.py)
* node        PgNode, node_from_component, detect_bin_dir
* errors      PgError and its subclasses (FailbackError: message + hint)
* conn        connect, classify_connect_error
* node_facts  PgObservation, observe, classify, ensure_same_cluster (one node, read-only)
* facts       the component's observation for the service (ComponentObservation)
* process     initdb, start, stop, kill_postmaster, controldata, promote, checkpoint, reload
* replication configure_standby, final_position, wait_for_replay, wait_for_catchup
* divergence  Divergence, check_divergence, parse_history
* resync      ensure_clean_shutdown, rewind, reclone, resync
* settings    the component's settings; actions, steps: what plans run; driver: the Driver
"""
