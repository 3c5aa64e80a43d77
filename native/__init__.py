"""The C sources arenacheck ships: the native arena and the Wine server (package data)."""
