"""Baselines of sites and the clean room: proof that a site is clean, not only healthy.

``measure`` hashes declared files and command outputs on one machine (through its
``Host``); ``site`` does it for every machine of a site; ``files`` keeps a baseline in the
state directory; ``compare`` lists every difference between a baseline and now;
``incident`` is the ``after_incident`` mark of a service, whose next failback carries the
``clean_room`` gate (``failback.engine.clean_room``).
"""
