"""Fault-injection helpers for liveness and chaos tests (real emulators behind them)."""
