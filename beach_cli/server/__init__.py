"""`beach serve`: the rendezvous server. It introduces hosts and joiners and relays what they
seal for each other; by construction (see the import contracts in pyproject.toml) it imports no
key, terminal or peer-link code, so it has nothing to read a session with."""
