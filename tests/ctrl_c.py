"""Child processes that Ctrl-C reaches, however the tests themselves were started."""

import signal


def sigint_default() -> None:
    """A ``preexec_fn`` that gives the child the default action for SIGINT.

    A shell starts a background job (``pytest &``, ``nohup``, many CI runners) with SIGINT
    ignored, the child inherits that, and a Python started with SIGINT ignored never installs
    its KeyboardInterrupt handler: a test that sends the child a Ctrl-C would see it run on.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
