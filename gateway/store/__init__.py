"""Durable files: received instances and stage artifacts."""
