"""Adapters that read the real on-disk layouts of public datasets (and the demo, written in those layouts)."""
