"""Example plugins: arenas a user points arenacheck at with --arena-impl."""
