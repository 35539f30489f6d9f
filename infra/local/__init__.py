"""The local stack: emulators and the four functions on loopback ports."""
