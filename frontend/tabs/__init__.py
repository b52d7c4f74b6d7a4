"""One module per tab: each has a ``build()`` step (the components) and a ``wire(demo)`` step (the events)."""
