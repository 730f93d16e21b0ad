"""Hosting a Queuer: the supervisor behind ``queuer run module:factory``."""
