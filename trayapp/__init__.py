"""Port Watch: what is on this port, and tell me when that changes."""

__version__ = "0.1.0"
APP_NAME = "portwatch"
