"""Model lifecycle: the deployers that run self-hosted models (``deployers/``), which the lifecycle workflows call."""
