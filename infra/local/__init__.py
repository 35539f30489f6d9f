"""The local stack: emulators and the three functions on loopback ports."""
