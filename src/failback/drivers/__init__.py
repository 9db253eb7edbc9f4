"""Drivers: code that observes and acts on one kind of component, through a Host."""
