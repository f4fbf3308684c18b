"""Data sources, preparation and the prepared-dataset format."""
