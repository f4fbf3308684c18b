"""Champion per task: the decision (pure), the pyfunc models, and the MLflow registry adapter."""
