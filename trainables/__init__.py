"""Trainables: one faithful trial of the feature-reuse study (data, models, engine, results)."""
