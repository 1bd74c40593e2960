"""Snapshot features, call ml/, write versioned artifacts and ModelVersion rows."""
