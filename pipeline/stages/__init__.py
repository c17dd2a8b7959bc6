"""Curation stages; importing this package registers every built-in stage."""
