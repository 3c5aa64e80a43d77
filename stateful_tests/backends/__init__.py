"""Backends under test and their stand-ins: the registry, the kernel32 stand-in, Wine, recording."""
