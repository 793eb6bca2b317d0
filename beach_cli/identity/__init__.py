"""Who may join, by SSH key: the host's allowed keys (a file, or an account's published keys),
the joiner's proof that it holds one (through its ssh-agent or a key file), and what that proof
signs. Host and joiner only: the server never sees a key, a hint or a signature unsealed."""
