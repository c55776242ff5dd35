"""Authentication: passwords, access and refresh tokens, site tokens, and who is calling."""
