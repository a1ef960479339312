"""DVC stages: one thin module per stage, run as ``python -m stages.<name>``."""
