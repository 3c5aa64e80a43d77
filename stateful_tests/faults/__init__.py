"""Deliberately broken implementations: the bug zoo, broken arenas and pools, fault injection."""
