"""Shipped manifests (PianoYT, Audeo, demo) as data, their schema, loader and validator."""
