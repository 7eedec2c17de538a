"""LightQuant: next-day stock movement prediction from prices and news."""

__version__ = "0.1.0"
