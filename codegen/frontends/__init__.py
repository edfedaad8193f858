"""Frontends: model files -> IR graphs. One module and one op table per framework."""
