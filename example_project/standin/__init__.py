"""A local stand-in for Frame.io's OAuth 2.0 server and user-info API, built on DOT.

Kept import-light on purpose: the settings module lives in this package, so nothing here may
touch Django models at import time.
"""
