"""Running machines under pytest and Hypothesis: plugin, profiles, runner, implementations."""
