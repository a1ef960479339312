"""vivid-med: LLM-supervised structured pretraining of deployable medical ViTs (VIVID-Med)."""

__version__ = "0.1.0"
