"""mailward: a mail transfer agent centred on SMTP over TLS."""

__version__ = "0.1.0"
