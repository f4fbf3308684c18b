"""One module per DVC stage: a thin CLI that reads params and paths, then calls one function."""
