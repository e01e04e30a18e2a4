"""The status page: ``GET /status`` for people, next to the health JSON for machines.

Wire it into an app with :func:`install_status_page`::

    install_status_page(app, service)
"""

from cronkeeper.web.routes import StatusPage, install_status_page

__all__ = ["StatusPage", "install_status_page"]
