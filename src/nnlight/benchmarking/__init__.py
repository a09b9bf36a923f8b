"""Benchmark suites: datasets × configurations × variants × folds × seeds, one results table and a report."""
