"""One module per resource; every module here with a `router` is included by api.app (prefix: its `PREFIX`)."""
