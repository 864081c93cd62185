"""The ML backend server that Label Studio connects to: an HTTP adapter over :mod:`labelloop.serving.service`.

Start it with ``labelloop backend``; build the app in code with :func:`labelloop.backend.app.create_app`.
"""
