"""Pure Python: the vocabulary and rules of leads and communications. No I/O here."""
