"""The request path's pieces: the context one request carries, and the ``Stage`` interface."""
