"""Conformance tests for the sans-I/O text/event-stream codec (askstream.sse)."""
