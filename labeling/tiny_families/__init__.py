"""Tiny offline builders of the vision-language families beyond LLaVA-1.5, one module per family.

`labeling.tiny_models.FAMILIES` is their registry (with LLaVA-1.5); each builder saves a seeded checkpoint,
its processor and chat template the way the real checkpoints are saved.
"""
