"""Reports: what a run measured, built from its journal."""
