"""The job engine: generation jobs handed between processes (procrastinate on PostgreSQL)."""
