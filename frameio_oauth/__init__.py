"""Sign Django users in with Frame.io and keep their OAuth 2.0 tokens encrypted and fresh."""

__version__ = "0.1.0"
