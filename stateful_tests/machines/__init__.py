"""State machines: each runs an implementation beside its model and checks every step."""
