"""Prefect flows that run the DVC stages in order, on demand or on a schedule."""
