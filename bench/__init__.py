"""Benchmarks: print figures as ratios against a ceiling measured in the same run. Not collected by pytest."""
