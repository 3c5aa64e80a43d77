"""State machines, backends registry, and the harness that runs them under pytest."""
