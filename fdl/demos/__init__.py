"""Small end-to-end demonstrations built from library pieces."""
