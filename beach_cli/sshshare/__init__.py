"""`beach ssh [USER@]HOST`: share a remote machine's shell and join it from here, with ssh
carrying only the bootstrap (see "Sharing a remote machine" in docs/architecture.md)."""
