"""Test and bench support: tiny real-architecture models built offline (no downloads)."""
