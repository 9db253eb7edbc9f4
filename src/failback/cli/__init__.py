"""The command-line interface: thin, it loads, observes, plans and hands to the engine."""
