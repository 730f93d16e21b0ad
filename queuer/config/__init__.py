"""Configuration: the database connection and the worker's settings, from code or environment."""
