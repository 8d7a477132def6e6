"""One module per headless command; see engine/__main__.py."""
