"""How python-zeroconf's network errors are logged, for the peer's discovery and the client's alike.

A send that fails because the link is down (`[Errno 101] Network is unreachable`) is the network, not a bug, but
zeroconf logs it as a WARNING with a full traceback, again and again while the Wi-Fi is gone.
"""

from __future__ import annotations

import errno
import logging

NETWORK_GONE = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EADDRNOTAVAIL, errno.ENODEV})


class NetworkGoneInOneLine(logging.Filter):
    """python-zeroconf reports a send that fails because the link is down (`[Errno 101] Network is unreachable`)
    as a WARNING with a full traceback. That is the network, not a bug: this filter, on the "zeroconf" logger,
    keeps the message and drops the traceback, so it is one line. Other errors keep theirs."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, OSError) and exc.errno in NETWORK_GONE:
            record.msg = f"{record.getMessage()} (mDNS resumes when the network is back)"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_network_errors() -> None:
    """Install `NetworkGoneInOneLine` on zeroconf's logger, once per process."""
    zeroconf_logger = logging.getLogger("zeroconf")
    if not any(isinstance(f, NetworkGoneInOneLine) for f in zeroconf_logger.filters):
        zeroconf_logger.addFilter(NetworkGoneInOneLine())
