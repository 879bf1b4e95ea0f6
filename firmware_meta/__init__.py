"""The firmware catalog: one manifest per device model and version (not yet populated)."""
