"""Container builders, one module per multi-container pattern, and the built-in profile catalog."""
