"""The etcd backend of the store: runs, events and service state in an etcd cluster
shared by several machines (the control plane), one module per concern, one object
(``EtcdStore``) composing them, as ``store/sqlite/`` does for one machine.

Key layout, all under ``<prefix>/store/`` (numbers zero-padded, so key order is id
order and a range of keys is a range of ids):

==================================  ====================================================
``seq/runs``                        the last run id given out (text)
``runs/<id:012d>``                  a run's record: service, kind, status, times,
                                    topology path, options, error, hint, pid, its
                                    creation ``token`` and the ``write`` token of the
                                    last write (JSON)
``plans/<id:012d>``                 the run's plan (JSON)
``topologies/<id:012d>``            the topology file's text the run was made from
``values/<id:012d>``                the values steps keep for later steps (JSON)
``reports/<id:012d>``               the run's final report (JSON), once saved
``steps/<id:012d>/<idx:04d>``       one step of the run (JSON)
``measurements/<id:012d>/<token>``  one measured figure; ordered by etcd's create
                                    revision (JSON)
``approvals/<id:012d>/<step id>``   a gate's first approval (JSON)
``locks/<service>``                 the run holding the service: run id, when, the run's
                                    creation token (JSON)
``services/<service>``              where the service runs now and the facts kept
                                    between runs (JSON)
``seq/events``                      the last event id given out (text)
``events/<id:016d>``                one event (JSON); the newest 20,000 or so are kept
==================================  ====================================================

Every write is one etcd transaction, and every read-decide-write (a status transition,
the lock, a read-modify-write of values or of a service's data) commits only if the keys
it read are unchanged (``keys.Writer.optimistic``); an answer lost on the way is
resolved by reading back, never by writing twice. The monitor's probe results stay in
the local SQLite file of the state directory (health.py says why).
"""

from __future__ import annotations

from failback.store.etcd.events import EtcdEvents
from failback.store.etcd.health import EtcdHealth
from failback.store.etcd.keys import MAX_WRITE_BYTES, Keys
from failback.store.etcd.runs import EtcdRuns
from failback.store.etcd.service_state import EtcdServiceState


class EtcdStore(EtcdRuns, EtcdEvents, EtcdServiceState, EtcdHealth):
    """The store of one control plane, under ``<prefix>/store/`` in etcd: every concern
    of ``Store`` (store/base.py) on one ``EtcdClient``, which it owns (``close`` closes
    it); the health in ``state_dir``'s SQLite file.

    ``EtcdStore(state_dir, client, prefix)``: ``state_dir`` is the machine's state
    directory (run process locks live beside the store), ``prefix`` the control plane's
    own etcd prefix (two stores under one prefix are one store).
    """


__all__ = ["MAX_WRITE_BYTES", "EtcdStore", "Keys"]
