"""The ``dns`` driver: move a service's name between sites by RFC 2136 dynamic updates
signed with TSIG, observe it as the authoritative server and a resolver answer it, and
wait out the record's TTL between traffic steps."""
