"""Observed state: what each component at each site looks like right now."""
