"""Seeing what runs: Prometheus metrics, OpenTelemetry tracing, log records with the job."""
