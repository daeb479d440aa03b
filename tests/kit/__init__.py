"""Shared test helpers, imported as plain modules (`from kit.dask_cluster import ...`)."""
