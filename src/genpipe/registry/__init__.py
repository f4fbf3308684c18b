"""Champion per task: the decision (pure), applying it compare-and-set, the typed files, the
pyfunc models, and the MLflow registry adapter."""
