"""Background work: the lead processor (and, later, the dispatcher) and their run loop."""
