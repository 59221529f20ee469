"""kdprivacy: measure how much of a teacher LLM's private training data leaks into distilled students."""

__version__ = "0.1.0"
