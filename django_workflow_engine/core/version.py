"""The package's version, in a module of its own so that any layer can read it without importing the package
root (which imports the facade)."""

VERSION = "0.1.0"
