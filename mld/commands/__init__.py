"""Command groups of the `mld` CLI; each module exposes `register(subparsers)`."""
