"""What a CEN model learned: which channels each modality gives away."""

from cenfusion.analysis.exchange_stats import ExchangeStats, exchange_statistics

__all__ = ["ExchangeStats", "exchange_statistics"]
