"""HTTP routes grouped by API family; `app.create_app` mounts them all."""
