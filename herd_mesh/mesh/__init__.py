"""The mesh: finding peers (mDNS, static addresses, callers), knowing which are up, one client per peer, this
peer's advertised state, and mesh-wide settings."""
