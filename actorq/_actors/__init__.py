"""The actors: the scheduler that owns the core, and the workers that run jobs."""
