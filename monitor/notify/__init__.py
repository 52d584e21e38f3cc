"""Outbound messages: rendering and delivery."""
