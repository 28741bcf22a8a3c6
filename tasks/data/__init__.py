"""Rows in: bundled datasets, CSV tables, folds, per-fold preprocessing, text and series windows."""
