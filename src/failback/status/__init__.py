"""What every interface shows about a service: the status document (above the monitor,
whose liveness it includes, and the engine, whose current run it includes)."""
