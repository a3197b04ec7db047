"""The fleet server: osquery's TLS endpoints, the admin API and the workers behind them."""
