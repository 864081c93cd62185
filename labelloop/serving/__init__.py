"""The serving core behind the ML backend: a facade (``service``) over the store, the version registry,
training, publishing to Label Studio and the prediction sources."""
