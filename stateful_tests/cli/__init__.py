"""The ``arenacheck`` command and its tools: replay, zoo, bench, campaign, windows-python."""
