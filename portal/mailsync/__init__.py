"""Talking to mail servers and importing mail. No Flask imports anywhere in this package."""
