"""herd-mesh: identical peers on every Mac that find each other over mDNS and route AI work to the best one."""

__version__ = "0.1.0"

__all__ = ["__version__"]
