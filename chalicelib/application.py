"""Creates the Chalice application. ``app.py`` calls this once; the local runtime calls it
once per server thread, because Chalice keeps the current request on the app object."""

from __future__ import annotations

from chalice.app import Chalice

from .events.handlers import events
from .http.chalice_views import BINARY_TYPES, management_blueprint, v2_blueprint
from .wiring import management_api, v2_api


def create_app() -> Chalice:
    app = Chalice(app_name="portside")
    app.api.binary_types = list(BINARY_TYPES)
    app.register_blueprint(v2_blueprint(v2_api))
    app.register_blueprint(management_blueprint(management_api))
    # A module-level blueprint: its schedule handlers must be module attributes (see
    # chalicelib/events/handlers.py); registering it with several apps is harmless.
    app.register_blueprint(events)
    return app
