"""Everything needed to run calsync on one machine: emulators and the launcher."""
