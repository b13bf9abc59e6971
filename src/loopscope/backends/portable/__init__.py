"""Portable backends."""
