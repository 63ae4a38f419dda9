"""Ordered, immutable ``NNNN_name.sql`` migrations, shipped inside the package."""
