"""ASGI entry point ``ops.asgi:app`` for hypercorn workers and other ASGI servers.

Builds Baton from the configuration file named by ``BATON_CONFIG`` (``baton
serve`` sets it when it runs several workers). Example::

    BATON_CONFIG=/etc/baton/baton.toml hypercorn -c ops/deploy/hypercorn.toml ops.asgi:app
"""

from __future__ import annotations

import os

from ops.serving import CONFIG_ENV, end_with_master

from app.config import load_config
from app.logs import configure_logging
from app.server import create_app

_path = os.environ.get(CONFIG_ENV)
if not _path:
    raise RuntimeError("BATON_CONFIG must name Baton's configuration file (baton.toml)")

end_with_master()
_config = load_config(_path)
configure_logging(_config.logging.level, _config.logging.format)
app = create_app(_config)
