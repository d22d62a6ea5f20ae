"""Scoring methods of the app: per-image numbers stored in the datastore for active learning."""
