"""fleetctl: an osquery fleet server, IPC-abuse packs and detection (ATT&CK T1559, DET0493)."""

__version__ = "0.1.0"

__all__ = ["__version__"]
