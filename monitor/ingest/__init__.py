"""Readers: lab files and feeds in, typed records out. No database, no patient matching."""
