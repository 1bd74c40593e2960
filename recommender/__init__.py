"""A Django recommender plugin that gives long-tail products fair, measured exposure."""

__version__ = "0.1.0"
