"""Traces of a run, the regression files written from them, replay, and pictures of memory."""
