"""Unit tests: pure logic only. No root, no kernel, no network; plugins run in-process
through the injectable skel with in-memory streams."""
