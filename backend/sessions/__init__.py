"""Browser sessions kept server-side, and the one-time sign-in codes `lisa serve` prints."""
