"""The web layer: the one app factory, middleware, and the HTTP routes grouped by API family."""
