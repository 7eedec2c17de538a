"""Data layer: sources -> panel -> features/labels/splits -> tensors."""

from lightquant.data.market import MarketData, Split, build_market_data, load_market_data
from lightquant.data.panel import Panel

__all__ = ["MarketData", "Panel", "Split", "build_market_data", "load_market_data"]
