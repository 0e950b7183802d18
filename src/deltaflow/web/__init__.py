"""The playground: build, train and step a small network in the browser.

:mod:`deltaflow.web.session` holds one page's state and calls the engine;
:mod:`deltaflow.web.server` (which needs the ``web`` extra: Starlette and Uvicorn) serves
the page, its static files and one WebSocket per tab. ``deltaflow playground`` starts it.
"""
