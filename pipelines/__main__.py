"""`python -m pipelines [-S key=value ...] [--preset FILE] [--dispatch]`: one run of the flow."""

from pipelines.genpipe_flow import main

if __name__ == "__main__":
    raise SystemExit(main())
