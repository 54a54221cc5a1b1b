"""The HTTP API (FastAPI): routes, authentication, errors, event streams; see docs/api.md."""
