"""Datasets and data pipelines (no model code here)."""
