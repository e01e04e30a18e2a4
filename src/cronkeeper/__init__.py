"""cronkeeper: scheduled data collection with a run ledger, honest retries and a health check."""

__version__ = "0.1.0"
__all__ = ["__version__"]
