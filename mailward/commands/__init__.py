"""The ``mailward`` sub-commands, one module each: serve (and quickstart, worker), queue, ca,
policy. They sit above every other package (they may import any of them; nothing imports
them but :mod:`mailward.cli`), so that command-line code never makes two packages depend on
each other."""
