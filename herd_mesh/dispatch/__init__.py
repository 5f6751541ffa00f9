"""Dispatch: where each request runs. One attempt loop (`dispatcher`) serves every kind of work; the kinds
(`images`, `models`) say how a try is made here or on another peer."""
