"""Install Baton's test network guard at interpreter start.

Tests put this directory first on ``PYTHONPATH`` of the ``baton`` subprocesses they
start (see ``tests/support/fixtures.py::subprocess_env``). Python imports
``sitecustomize`` automatically, so those processes refuse any connection that is
not loopback and log it to ``$BATON_NETGUARD_LOG``, where the parent test sees it.

This must never break interpreter start-up: if the guard cannot be imported (the
file was copied elsewhere, say) it warns on stderr and carries on unguarded.
"""

from __future__ import annotations

import importlib.util
import os
import sys


def _install_guard() -> None:
    # guard_site/ -> support/ -> tests/ -> repository root.
    root = os.path.dirname(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    )
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        from tests.support import netguard
    except Exception as exc:  # pragma: no cover - only when the tree is broken
        sys.stderr.write(f"guard_site: network guard NOT installed ({exc!r})\n")
        return
    netguard.install()


def _chain_shadowed_sitecustomize() -> None:
    """Run the ``sitecustomize`` this file hides (e.g. a distribution's), if any."""
    here = os.path.dirname(os.path.abspath(__file__))
    for entry in sys.path:
        if os.path.abspath(entry or os.curdir) == here:
            continue
        candidate = os.path.join(entry or os.curdir, "sitecustomize.py")
        if os.path.isfile(candidate):
            spec = importlib.util.spec_from_file_location("_shadowed_sitecustomize", candidate)
            if spec is not None and spec.loader is not None:
                module = importlib.util.module_from_spec(spec)
                try:
                    spec.loader.exec_module(module)
                except Exception as exc:  # pragma: no cover - foreign code
                    sys.stderr.write(f"guard_site: shadowed sitecustomize failed ({exc!r})\n")
            return


_install_guard()
_chain_shadowed_sitecustomize()
