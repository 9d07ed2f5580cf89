"""HTML comparison reports rendered from the store."""
