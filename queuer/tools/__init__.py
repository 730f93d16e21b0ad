"""Tools for people, not for the library: the benchmark, the demo and a throwaway PostgreSQL."""
