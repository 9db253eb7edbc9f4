"""The ``route`` driver: a prefix's Linux route moved between two network paths."""
