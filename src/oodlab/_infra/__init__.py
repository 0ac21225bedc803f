"""Private plumbing shared by the public modules. Not part of the public API."""
