"""Sweeps: sets of DVC experiments (planned here, run by pipelines/sweep.py) and what they say."""
