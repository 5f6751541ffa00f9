"""A peer whose link is down says so in one line, not with python-zeroconf's traceback (issue 13, item 5).

While the cable is out, zeroconf's sends fail with `[Errno 101] Network is unreachable`, and its listener logs that
as a WARNING with the whole traceback (`QuietLogger.log_exception_once`, from `AsyncListener.error_received`).
`herd_mesh.mesh.discovery` puts a filter on zeroconf's logger when discovery starts. The real thing, a peer in a
network namespace whose link goes down, is checked in `tests/test_faults.py`.
"""

from __future__ import annotations

import errno
import logging
import os
import uuid

import pytest
from zeroconf._logger import QuietLogger

from herd_mesh.core.zeroconf_log import NetworkGoneInOneLine, quiet_network_errors

FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")


def _raised(exc: Exception) -> Exception:
    """`exc` with a traceback, as zeroconf has it when asyncio's sendto fails."""
    try:
        raise exc
    except Exception as caught:
        return caught


def _zeroconf_reports(exc: Exception, caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    """What zeroconf's listener does with a socket error (`error_received`), the first time for that socket."""
    message = f"Error with socket {uuid.uuid4().hex} (('10.1.2.3', 5353))): %s"  # new: zeroconf warns once each
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="zeroconf"):
        QuietLogger.log_exception_once(exc, message, exc)
    [record] = [r for r in caplog.records if r.name == "zeroconf"]
    return record


@pytest.mark.parametrize("code", [errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EADDRNOTAVAIL])
def test_a_link_that_is_down_is_one_line_without_a_traceback(caplog: pytest.LogCaptureFixture, code: int) -> None:
    quiet_network_errors()
    record = _zeroconf_reports(_raised(OSError(code, os.strerror(code))), caplog)
    line = FORMAT.format(record)
    assert "\n" not in line and "Traceback" not in line, line
    assert f"[Errno {code}]" in line and "Error with socket" in line  # zeroconf's own words, kept
    assert "mDNS resumes when the network is back" in line
    assert record.levelno == logging.WARNING  # still said, once per socket, as zeroconf decides


def test_other_zeroconf_errors_keep_their_traceback(caplog: pytest.LogCaptureFixture) -> None:
    quiet_network_errors()
    record = _zeroconf_reports(_raised(ValueError("a bug in a packet parser")), caplog)
    assert "Traceback" in FORMAT.format(record)
    refused = _zeroconf_reports(_raised(OSError(errno.EPERM, "Operation not permitted")), caplog)
    assert "Traceback" in FORMAT.format(refused)  # not the network going away: worth the traceback


def test_without_the_filter_zeroconf_logs_the_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """The behaviour the filter exists for, so that a zeroconf that stops doing it is noticed."""
    zeroconf_logger = logging.getLogger("zeroconf")
    ours = [f for f in zeroconf_logger.filters if isinstance(f, NetworkGoneInOneLine)]
    for f in ours:
        zeroconf_logger.removeFilter(f)
    try:
        record = _zeroconf_reports(_raised(OSError(errno.ENETUNREACH, "Network is unreachable")), caplog)
    finally:
        for f in ours:
            zeroconf_logger.addFilter(f)
    assert record.levelno == logging.WARNING and "Traceback" in FORMAT.format(record)


def test_installing_twice_adds_one_filter() -> None:
    quiet_network_errors()
    quiet_network_errors()
    assert sum(isinstance(f, NetworkGoneInOneLine) for f in logging.getLogger("zeroconf").filters) == 1
