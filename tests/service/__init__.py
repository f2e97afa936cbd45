"""Tests for the ask service (askstream.service), over real HTTP to uvicorn subprocesses."""
