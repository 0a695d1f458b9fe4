"""The web interface (``mercure webgui``): FastAPI + Jinja2 + htmx, served by uvicorn.

::

    service.py     the service: uvicorn inside the service frame, the session key, reloads
    app.py         create_app(): middleware, templates, static files, the pages
    context.py     WebContext: what every request needs (settings, sessions, bookkeeper ...)
    settings.py    WebSettings: the values of the configuration the app follows (reloadable)
    asgi.py        pure ASGI layers in front of everything: root path, proxy headers,
                   body limit, security headers
    sessions.py    server-side sessions, signed cookie, idle and absolute timeouts
    auth.py        requires(role) / public(): who may use a route; CSRF on every change
    throttle.py    sign-in throttling per user name and per client address
    bookkeeper.py  the client of the bookkeeper's API (users, statistics, searches)
    audit.py       audit(request, action, object, message): the audit log
    rendering.py   templates (autoescape everywhere), url(), filters
    overview.py    what the overview shows, read from the data folder
    pages/         one module per page (APIRouter each): auth (sign-in), overview ...
    templates/     Jinja2 templates: base.html is the layout every page extends
    static/        own CSS and JS, and vendor/ (htmx, Pico CSS, uPlot; see VENDORED.json)

Every route declares who may use it (``requires(Role.VIEWER)`` or ``public()``); the app
refuses to start with a route that does not, and tests enumerate the routes to check it.
"""
