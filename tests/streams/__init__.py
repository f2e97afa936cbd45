"""Tests for the stream log (askstream.streams)."""
