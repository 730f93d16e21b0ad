"""The client: the Queuer facade and what it delegates to (enqueue, reads, events, tasks)."""
