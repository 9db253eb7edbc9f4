"""failback: return a service to its primary site after it ran on a secondary site."""

__version__ = "0.1.0"
