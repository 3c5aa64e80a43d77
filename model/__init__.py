"""Pure-Python reference models: geometry, Windows and POSIX virtual memory, the arena and
the pool, and the OS's view of memory as spans.

Nothing in this package touches the OS or ctypes, so every prediction it makes is a
function of the calls it was shown and the addresses the OS returned.
"""
