"""The worker's moving parts: each background loop is an object with start()/stop()."""
