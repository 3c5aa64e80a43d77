"""The real thing: the arena over ctypes calls into the OS, one module per OS."""
