"""Catalog reading and validation, embedding, and index jobs."""
